//! Fuzzing the wire protocol and the grants file (`docs/guarantees.md`, “Reliable”): decoding
//! any bytes — random, random JSON, or a valid message damaged — never panics and fails only with
//! the documented typed error; valid requests and replies survive an encode/decode round trip
//! exactly.

use hakiri_core::{
    CursorAdvance, CursorValue, DecisionId, Entity, Epoch, Error, FenceReason, HolderId, Lease,
    Limit, PipelineId, RunId, StreamName, Timestamp,
};
use hakiri_protocol::{decode_reply, decode_request, encode, Grants, Reply, Request, Response};
use proptest::prelude::*;
use serde_json::Value;

/// Every operation name, so that random JSON often reaches a variant's fields.
const OPS: &[&str] = &[
    "put_pipeline",
    "get_pipeline",
    "list_pipelines",
    "set_paused",
    "delete_pipeline",
    "acquire",
    "force_acquire",
    "renew",
    "release",
    "begin_run",
    "advance",
    "checkpoint",
    "finish_run",
    "get_run",
    "list_runs",
    "get_cursor",
    "list_cursors",
    "cursor_history",
    "reset_cursor",
    "observe_schema",
    "get_schema",
    "list_schema_versions",
    "list_decisions",
    "decide",
    "pipeline_statuses",
    "events",
];

/// Random JSON; `floats` adds arbitrary floating-point numbers (see `float_values_round_trip`).
fn json_of(floats: bool) -> impl Strategy<Value = Value> {
    let float = if floats {
        any::<f64>().prop_map(Value::from).boxed()
    } else {
        // Floats with few significant digits, which parse back exactly either way.
        (any::<i32>(), 0u32..4)
            .prop_map(|(m, e)| Value::from(f64::from(m) / f64::from(10u32.pow(e))))
            .boxed()
    };
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        float,
        "[a-z_]{0,12}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        prop::sample::select(OPS).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    json_of(true)
}

/// A JSON object shaped like a request: an `op` and random fields.
fn request_like() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(OPS),
        prop::collection::btree_map(
            prop::sample::select(
                &[
                    "pipeline", "after", "limit", "holder", "ttl_ms", "lease", "run", "stream",
                    "advance", "finish", "begin", "spec", "mode", "by", "reason", "query",
                    "version", "before", "decision", "decide", "change", "schema", "reset",
                    "expected",
                ][..],
            ),
            json_value(),
            0..6,
        ),
    )
        .prop_map(|(op, fields)| {
            let mut object: serde_json::Map<String, Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            object.insert("op".into(), Value::from(op));
            Value::Object(object)
        })
}

fn slug() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._-]{0,30}"
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9 ._:/-]{0,30}[A-Za-z0-9]"
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (0i64..4_102_444_800_000).prop_map(Timestamp::from_millis)
}

/// Counters the protocol carries stay below 2^53 (JavaScript numbers).
fn counter() -> impl Strategy<Value = u64> {
    0u64..(1 << 53)
}

fn limit() -> impl Strategy<Value = Limit> {
    (1u32..=1000).prop_map(|n| Limit::new(n).expect("in range"))
}

fn cursor_value() -> impl Strategy<Value = CursorValue> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        "[ -~]{0,40}".prop_map(Value::from),
        json_of(false),
    ]
    .prop_map(|v| CursorValue::new(v).expect("small values are valid"))
}

fn lease() -> impl Strategy<Value = Lease> {
    (slug(), name(), counter(), timestamp()).prop_map(|(p, h, epoch, expires_at)| Lease {
        pipeline: PipelineId::new(p).expect("valid"),
        holder: HolderId::new(h).expect("valid"),
        epoch: Epoch(epoch),
        expires_at,
    })
}

fn run_id() -> impl Strategy<Value = RunId> {
    (timestamp(), any::<[u8; 10]>()).prop_map(|(t, e)| RunId::from_parts(t, e))
}

/// Valid requests with random arguments, across the variants' argument kinds.
fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        slug().prop_map(|p| Request::GetPipeline {
            pipeline: PipelineId::new(p).expect("valid")
        }),
        (prop::option::of(slug()), limit()).prop_map(|(after, limit)| Request::ListPipelines {
            after: after.map(|a| PipelineId::new(a).expect("valid")),
            limit
        }),
        (slug(), name(), counter()).prop_map(|(p, h, ttl_ms)| Request::Acquire {
            pipeline: PipelineId::new(p).expect("valid"),
            holder: HolderId::new(h).expect("valid"),
            ttl_ms
        }),
        (lease(), counter()).prop_map(|(lease, ttl_ms)| Request::Renew { lease, ttl_ms }),
        lease().prop_map(|lease| Request::Release { lease }),
        (
            lease(),
            run_id(),
            name(),
            cursor_value(),
            prop::option::of(counter())
        )
            .prop_map(|(lease, run, s, value, expected)| {
                let advance = CursorAdvance::to(value);
                Request::Advance {
                    lease,
                    run,
                    stream: StreamName::new(s).expect("valid"),
                    advance: match expected {
                        Some(v) => advance.expecting(v),
                        None => advance,
                    },
                }
            }),
        run_id().prop_map(|run| Request::GetRun { run }),
        (slug(), name(), prop::option::of(counter()), limit()).prop_map(|(p, s, before, limit)| {
            Request::CursorHistory {
                pipeline: PipelineId::new(p).expect("valid"),
                stream: StreamName::new(s).expect("valid"),
                before,
                limit,
            }
        }),
        (slug(), name(), prop::option::of(any::<u32>())).prop_map(|(p, s, version)| {
            Request::GetSchema {
                pipeline: PipelineId::new(p).expect("valid"),
                stream: StreamName::new(s).expect("valid"),
                version,
            }
        }),
        (counter(), limit()).prop_map(|(after, limit)| Request::Events { after, limit }),
    ]
}

fn error() -> impl Strategy<Value = Error> {
    prop_oneof![
        any::<String>().prop_map(Error::InvalidArgument),
        any::<String>().prop_map(Error::Unavailable),
        any::<String>().prop_map(Error::Backend),
        any::<String>().prop_map(Error::FailedPrecondition),
        slug().prop_map(|p| Error::NotFound(Entity::Pipeline {
            pipeline: PipelineId::new(p).expect("valid")
        })),
        counter().prop_map(|d| Error::NotFound(Entity::Decision {
            decision: DecisionId(d)
        })),
        (slug(), counter(), counter()).prop_map(|(p, epoch, current)| Error::Fenced {
            pipeline: PipelineId::new(p).expect("valid"),
            epoch: Epoch(epoch),
            reason: FenceReason::Superseded {
                current: Epoch(current)
            },
        }),
        (slug(), counter(), timestamp()).prop_map(|(p, epoch, at)| Error::Fenced {
            pipeline: PipelineId::new(p).expect("valid"),
            epoch: Epoch(epoch),
            reason: FenceReason::Expired { at },
        }),
        (lease()).prop_map(|l| Error::Leased {
            pipeline: l.pipeline,
            holder: l.holder,
            epoch: l.epoch,
            expires_at: l.expires_at,
        }),
        (slug(), name(), any::<i64>(), any::<i64>()).prop_map(|(p, s, a, b)| {
            Error::CursorRegression {
                pipeline: PipelineId::new(p).expect("valid"),
                stream: StreamName::new(s).expect("valid"),
                current: Value::from(a),
                proposed: Value::from(b),
            }
        }),
        (slug(), any::<String>(), any::<String>()).prop_map(|(p, expected, actual)| {
            Error::Conflict {
                entity: Entity::Pipeline {
                    pipeline: PipelineId::new(p).expect("valid"),
                },
                expected,
                actual,
            }
        }),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        Just(Response::Unit),
        Just(Response::MaybeCursor(None)),
        Just(Response::Events(Vec::new())),
        lease().prop_map(Response::Lease),
    ]
}

/// A valid message, damaged: truncated, a byte replaced, or bytes inserted.
fn damaged(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len();
    (
        0..=len,
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..8),
        0..3u8,
    )
        .prop_map(move |(at, byte, insert, how)| {
            let mut bytes = valid.clone();
            match how {
                0 => bytes.truncate(at),
                1 if at < bytes.len() => bytes[at] = byte,
                _ => {
                    let tail = bytes.split_off(at.min(bytes.len()));
                    bytes.extend(insert);
                    bytes.extend(tail);
                }
            }
            bytes
        })
}

/// Decoding failed with the documented error kind, or succeeded with a value that re-encodes.
fn check_request_decode(bytes: &[u8]) {
    match decode_request(bytes) {
        Ok(request) => {
            let again = decode_request(&encode(&request)).expect("a decoded request re-encodes");
            assert_eq!(again, request);
        }
        Err(Error::InvalidArgument(_)) => {}
        Err(other) => panic!("decode_request failed with {other:?}, not InvalidArgument"),
    }
}

fn check_reply_decode(bytes: &[u8]) {
    // A decoded `Err` is the server's error and may be of any kind; a failure to decode is
    // `Backend` with the "malformed reply" message.
    if let Err(Error::Backend(m)) = decode_reply(bytes) {
        let is_reply = serde_json::from_slice::<Reply>(bytes).is_ok();
        assert!(is_reply || m.contains("malformed reply"), "{m}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_request_decode(&bytes);
        check_reply_decode(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        let bytes = serde_json::to_vec(&value).expect("json");
        check_request_decode(&bytes);
        check_reply_decode(&bytes);
    }

    #[test]
    fn request_shaped_json_never_panics(value in request_like()) {
        check_request_decode(&serde_json::to_vec(&value).expect("json"));
    }

    #[test]
    fn requests_round_trip(request in request()) {
        prop_assert_eq!(decode_request(&encode(&request)), Ok(request));
    }

    #[test]
    fn replies_round_trip(response in response(), error in error()) {
        prop_assert_eq!(decode_reply(&encode(&Reply::Ok(response.clone()))), Ok(response));
        prop_assert_eq!(decode_reply(&encode(&Reply::Err(error.clone()))), Err(error));
    }

    #[test]
    fn damaged_requests_never_panic(
        bytes in request().prop_flat_map(|r| damaged(encode(&r)))
    ) {
        check_request_decode(&bytes);
    }

    #[test]
    fn damaged_replies_never_panic(
        bytes in error().prop_flat_map(|e| damaged(encode(&Reply::Err(e))))
    ) {
        check_reply_decode(&bytes);
    }
}

/// Any float in a cursor value crosses the protocol unchanged (serde_json's `float_roundtrip`
/// feature, enabled in the workspace: without it some floats come back one ULP off, e.g.
/// `5.064483400274247e251` → `…246e251`, silently changing an opaque cursor).
#[test]
fn float_values_round_trip() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(2000));
    let strategy = (lease(), run_id(), any::<f64>());
    runner
        .run(&strategy, |(lease, run, f)| {
            let request = Request::Advance {
                lease,
                run,
                stream: StreamName::new("s").expect("valid"),
                advance: CursorAdvance::to(CursorValue::new(Value::from(f)).expect("valid")),
            };
            prop_assert_eq!(decode_request(&encode(&request)), Ok(request));
            Ok(())
        })
        .expect("every float round-trips");
}

/// Deeply nested JSON (a classic stack exhaustion) is refused, not a crash.
#[test]
fn deep_nesting_is_refused() {
    let deep = format!(
        "{{\"op\":\"checkpoint\",\"advance\":{{\"value\":{}{}}}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(matches!(
        decode_request(deep.as_bytes()),
        Err(Error::InvalidArgument(_))
    ));
    assert!(decode_reply(deep.as_bytes()).is_err());
}

/// A JSON list of objects shaped like grants: the grant fields with random values, sometimes a
/// valid one, so that parsing reaches every field's check.
fn grants_like() -> impl Strategy<Value = Value> {
    let field = prop::sample::select(&["name", "token", "sha256", "projects", "role", "roles"][..]);
    let plausible = prop_oneof![
        Just(Value::from("*")),
        Just(Value::from("admin")),
        Just(Value::from("read")),
        Just(Value::from("a".repeat(64))),
        Just(serde_json::json!(["acme", "beta"])),
        json_value(),
    ];
    prop::collection::vec(
        prop::collection::btree_map(field, plausible, 0..6)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        0..4,
    )
    .prop_map(Value::Array)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The grants file is an operator's input: any text or JSON parses or fails with a typed
    /// `GrantsError`, never a panic, and the error never quotes a token (checked for tokens long
    /// enough not to match the message's own words by chance).
    #[test]
    fn grants_never_panic(text in any::<String>(), value in grants_like()) {
        let _ = Grants::parse(&text);
        if let Err(error) = Grants::parse(&value.to_string()) {
            let message = error.to_string();
            for token in value.as_array().into_iter().flatten().filter_map(|g| g.get("token")?.as_str()) {
                prop_assert!(token.chars().count() < 16 || !message.contains(token), "{message}");
            }
        }
    }
}
