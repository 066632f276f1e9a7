use super::*;
use crate::audit::{Actor, EventKind};
use crate::cursor::CursorKind;
use crate::ids::{ConnectorRef, Generation};
use crate::pipeline::{plan_put, PipelineSpec, PutMode, PutPlan};

fn t(millis: i64) -> Timestamp {
    Timestamp::from_millis(millis)
}

fn pipeline(id: &str) -> Record {
    let spec = PipelineSpec::new(
        PipelineId::new(id).unwrap(),
        ConnectorRef::new("jsonl").unwrap(),
        CursorKind::Monotonic,
    );
    let PutPlan::Create(pipeline) = plan_put(None, spec, PutMode::Create, t(0)).unwrap() else {
        panic!("a new pipeline is created");
    };
    Record::Pipeline {
        pipeline,
        lease: None,
    }
}

fn event(seq: u64, pipeline: &str) -> Record {
    Record::Event {
        event: Event {
            seq,
            at: t(seq as i64),
            actor: Actor::System,
            pipeline: PipelineId::new(pipeline).unwrap(),
            kind: EventKind::PipelineCreated {
                generation: Generation(1),
            },
        },
    }
}

fn header() -> Header {
    Header {
        format: FORMAT,
        project: ProjectId::new("acme").unwrap(),
        exported_at: t(1_000),
        counters: Counters {
            epoch: 4,
            decision: 0,
        },
    }
}

fn archive(records: &[Record]) -> (String, Summary) {
    let mut writer = ArchiveWriter::new(Vec::new(), header()).unwrap();
    for record in records {
        writer.record(record).unwrap();
    }
    let (bytes, summary) = writer.finish().unwrap();
    (String::from_utf8(bytes).unwrap(), summary)
}

fn sample() -> Vec<Record> {
    vec![pipeline("a"), pipeline("b"), event(1, "a"), event(2, "b")]
}

fn read(text: &str) -> std::result::Result<(Vec<Record>, Summary), ArchiveError> {
    let mut reader = ArchiveReader::new(text.as_bytes())?;
    let mut records = Vec::new();
    while let Some(record) = reader.next_record()? {
        records.push(record);
    }
    Ok((records, reader.summary()))
}

/// The error reading `text` gives, which must name `line`.
fn refused(text: &str, line: u64, says: &str) {
    let error = read(text).expect_err("the archive is refused");
    assert_eq!(error.line, line, "{error}");
    assert!(error.problem.contains(says), "{error}");
}

#[test]
fn what_is_written_reads_back_with_the_same_digest() {
    let (text, written) = archive(&sample());
    let (records, summary) = read(&text).unwrap();
    assert_eq!(records, sample());
    assert_eq!(summary, written);
    assert_eq!(summary.records, 4);
    assert_eq!(summary.events, 2);
    assert!(summary.digest.starts_with("sha256:") && summary.digest.len() == 71);
}

#[test]
fn the_digest_is_of_the_content_not_of_the_header_or_the_layout() {
    let (text, written) = archive(&sample());
    let renamed = text.replacen("\"acme\"", "\"other\"", 1);
    let spaced = renamed.replace("\"seq\":", "\"seq\" : ");
    assert_eq!(read(&spaced).unwrap().1.digest, written.digest);

    let mut more = sample();
    more.push(event(3, "a"));
    assert_ne!(archive(&more).1.digest, written.digest);
}

#[test]
fn a_truncated_archive_is_refused_at_the_line_where_it_stops() {
    let (text, _) = archive(&sample());
    let lines: Vec<&str> = text.lines().collect();
    let without_end = format!("{}\n", lines[..5].join("\n"));
    refused(&without_end, 6, "truncated");
    let cut_mid_line = &text[..text.len() - 10];
    refused(cut_mid_line, 6, "truncated");
    refused("", 1, "empty");
}

#[test]
fn a_changed_record_is_caught_by_the_digest_on_the_end_line() {
    let (text, _) = archive(&sample());
    let changed = text.replace("00:00:00.002Z", "00:00:00.009Z");
    assert_ne!(changed, text);
    refused(&changed, 6, "damaged");
}

#[test]
fn an_archive_of_a_newer_format_is_refused_before_anything_else() {
    let (text, _) = archive(&sample());
    let newer = text.replacen("\"format\":1", "\"format\":2,\"new\":true", 1);
    refused(&newer, 1, "newer than this hakiri reads");
    refused("{\"hello\":1}\n", 1, "not a Hakiri archive");
    refused("PK\u{3}\u{4}zip\n", 1, "not a Hakiri archive");
}

#[test]
fn records_out_of_order_are_refused_naming_their_line() {
    let (text, _) = archive(&[pipeline("b"), pipeline("a")]);
    refused(&text, 3, "pipelines are in id order");
    let (text, _) = archive(&[event(1, "a"), event(3, "a")]);
    refused(&text, 3, "without gaps");
    let (text, _) = archive(&[event(1, "a"), pipeline("a")]);
    refused(&text, 3, "after the events");
    let Record::Pipeline { pipeline, .. } = pipeline("a") else {
        unreachable!()
    };
    let lease = Some(LeaseState {
        epoch: crate::ids::Epoch(5),
        holder: None,
        expires_at: t(0),
    });
    let (text, _) = archive(&[Record::Pipeline { pipeline, lease }]);
    refused(&text, 2, "above the header's last epoch 4");
}

#[test]
fn a_cursor_version_at_the_top_of_the_range_is_refused_not_overflowed() {
    let entry = |version: u64| Record::CursorVersion {
        pipeline: PipelineId::new("a").unwrap(),
        stream: StreamName::new("s").unwrap(),
        entry: CursorHistoryEntry {
            version,
            value: crate::cursor::CursorValue::new(serde_json::json!(1)).unwrap(),
            change: crate::cursor::CursorChange::Checkpoint,
            run: None,
            epoch: None,
            by: Actor::System,
            at: t(0),
        },
    };
    let (text, _) = archive(&[pipeline("a"), entry(3), entry(u64::MAX)]);
    refused(&text, 4, "versions go down one by one");
}

#[test]
fn a_line_that_is_not_a_record_and_lines_after_the_end_are_refused() {
    let (text, _) = archive(&sample());
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[2] = "{\"type\":\"pipeline\",\"pipeline\":7}".into();
    refused(&format!("{}\n", lines.join("\n")), 3, "not a valid record");
    refused(&format!("{text}{{}}\n"), 7, "goes on after its end line");
}

fn batch(position: u64, records: usize, last: bool) -> ImportBatch {
    ImportBatch {
        archive: "sha256:one".into(),
        counters: Counters::default(),
        position,
        records: sample().into_iter().cycle().take(records).collect(),
        last,
    }
}

/// The head of a project: empty, or holding `events` events, with `importing` unfinished.
fn head(empty: bool, events: u64, importing: Option<&ImportMarker>) -> ArchiveHead {
    ArchiveHead {
        counters: Counters::default(),
        last_event: events,
        empty,
        importing: importing.cloned(),
    }
}

#[test]
fn an_import_starts_only_in_an_empty_project_and_resumes_only_where_it_stopped() {
    let empty = head(true, 0, None);
    let marker = plan_import(&empty, &batch(0, 3, false)).unwrap();
    assert_eq!(
        marker,
        Some(ImportMarker {
            archive: "sha256:one".into(),
            applied: 3
        })
    );
    let stopped = head(false, 1, marker.as_ref());
    let next = plan_import(&stopped, &batch(3, 2, true)).unwrap();
    assert_eq!(next, None, "the last batch ends the import");

    let full = plan_import(&head(false, 1, None), &batch(0, 3, false)).unwrap_err();
    assert!(full.to_string().contains("empty project"), "{full}");
    let late = plan_import(&empty, &batch(3, 3, false)).unwrap_err();
    assert!(late.to_string().contains("not record 3"), "{late}");
    let skipped = plan_import(&stopped, &batch(4, 1, true)).unwrap_err();
    assert!(skipped.to_string().contains("after 3 records"), "{skipped}");
    let other = ImportBatch {
        archive: "sha256:two".into(),
        ..batch(3, 1, true)
    };
    let other = plan_import(&stopped, &other).unwrap_err();
    assert!(other.to_string().contains("another archive"), "{other}");
    assert!(plan_import(&empty, &batch(0, 0, false)).is_err());
    assert_eq!(plan_import(&empty, &batch(0, 0, true)).unwrap(), None);
}

#[test]
fn a_batch_s_events_continue_the_project_s_log_one_after_another() {
    let events = |seqs: &[u64]| ImportBatch {
        records: seqs.iter().map(|&seq| event(seq, "a")).collect(),
        ..batch(4, 0, false)
    };
    let marker = ImportMarker {
        archive: "sha256:one".into(),
        applied: 4,
    };
    let stopped = head(false, 2, Some(&marker));
    assert!(plan_import(&stopped, &events(&[3, 4, 5])).is_ok());
    for (seqs, says) in [
        (&[4][..], "event 4 where event 3 comes next"),
        (&[2][..], "event 2 where event 3 comes next"),
        (&[3, 5][..], "event 5 where event 4 comes next"),
    ] {
        let error = plan_import(&stopped, &events(seqs)).unwrap_err();
        assert!(matches!(error, Error::InvalidArgument(_)), "{error}");
        assert!(error.to_string().contains(says), "{seqs:?}: {error}");
    }
    let at_the_top = head(false, u64::MAX, Some(&marker));
    assert!(plan_import(&at_the_top, &events(&[0])).is_err());
}
