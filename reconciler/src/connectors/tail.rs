//! The `tail` connector: complete lines appended to one file, resumed by byte offset (an opaque
//! cursor). The module docs of [`crate::connectors`] hold the config reference and the delivery
//! contract.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use hakiri_core::cursor::MAX_SAFE_INTEGER;
use hakiri_core::{
    Column, ColumnType, ConnectorConfig, CursorKind, CursorValue, PipelineSpec, Schema, StreamName,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::fs::File;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, BufReader};

use super::fields::{decode, dir_stream, non_empty_path, FieldError, Positive};
use super::{input_error, Output, DEFAULT_CHECKPOINT_EVERY, MAX_LINE_BYTES};
use crate::connector::{Connector, ConnectorError, RunContext, SpecProblem};

/// Bytes before the offset that the resume token's check covers.
const CHECK_LEN: usize = 64;

/// Copies complete lines appended to a file since the last checkpoint to
/// `<output>/<stream>/<run id>[.<input's extension>]`. Registered as `"tail"` by
/// [`super::builtin`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TailConnector;

#[async_trait]
impl Connector for TailConnector {
    fn check(&self, spec: &PipelineSpec) -> Result<(), SpecProblem> {
        Config::decode(&spec.config).map_err(|e| SpecProblem::config(e.in_config("tail")))?;
        check_kind(spec.cursor_kind).map_err(SpecProblem::cursor_kind)
    }

    async fn run(&self, ctx: &RunContext) -> Result<(), ConnectorError> {
        let config = Config::parse(ctx)?;
        check_kind(ctx.pipeline().spec.cursor_kind).map_err(|message| {
            ConnectorError::permanent(format!("pipeline {}: {message}", ctx.pipeline().id()))
        })?;
        let token = match ctx.cursor(&config.stream) {
            None => Token::default(),
            Some(value) => Token::from_json(value.as_json()).map_err(|problem| {
                ConnectorError::permanent(format!(
                    "tail: stream {}: the stored cursor {value} is not a tail resume token \
                     ({problem}); reset the cursor",
                    config.stream
                ))
            })?,
        };
        Tail::open(ctx, &config, token).await?.copy().await
    }
}

/// Refused before anything runs: the cursor is a resume token, not an orderable value.
fn check_kind(kind: CursorKind) -> Result<(), String> {
    super::opaque_only(kind, "tail", "the cursor is a resume token")
}

/// The config, as decoded: see the module docs of [`crate::connectors`] for the fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(deserialize_with = "non_empty_path")]
    input: PathBuf,
    #[serde(deserialize_with = "non_empty_path")]
    output: PathBuf,
    #[serde(deserialize_with = "dir_stream")]
    stream: StreamName,
    checkpoint_every: Option<Positive>,
}

impl Config {
    fn parse(ctx: &RunContext) -> Result<Self, ConnectorError> {
        Self::decode(ctx.config()).map_err(|e| e.in_config("tail"))
    }

    fn decode(config: &ConnectorConfig) -> Result<Self, FieldError> {
        decode(config.as_map())
    }

    fn checkpoint_every(&self) -> u64 {
        self.checkpoint_every
            .map_or(DEFAULT_CHECKPOINT_EVERY, Positive::get)
    }
}

/// The resume token, `{"offset": <bytes>, "check": {"len": <n>, "fnv1a": "<hex>"}}`: where the
/// next line starts, and a check of the bytes before it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Token {
    offset: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    check: Option<Check>,
}

/// Up to [`CHECK_LEN`] bytes ending at the token's offset: their length and FNV-1a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Check {
    len: u64,
    fnv1a: Fnv1a,
}

/// A 64-bit FNV-1a hash, written as 16 hexadecimal digits: a JSON number would lose precision
/// above 2^53.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
struct Fnv1a(u64);

impl TryFrom<String> for Fnv1a {
    type Error = &'static str;
    fn try_from(hex: String) -> Result<Self, Self::Error> {
        match u64::from_str_radix(&hex, 16) {
            Ok(hash) if hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(Self(hash))
            }
            _ => Err("must be 16 hexadecimal digits"),
        }
    }
}

impl From<Fnv1a> for String {
    fn from(hash: Fnv1a) -> Self {
        format!("{:016x}", hash.0)
    }
}

impl Token {
    fn from_json(value: &Value) -> Result<Self, FieldError> {
        let token: Self = decode(value)?;
        if let Some(check) = token.check {
            if check.len > CHECK_LEN as u64 || check.len > token.offset {
                return Err(FieldError::new(
                    "check.len",
                    format!(
                        "must be no larger than {CHECK_LEN} or the offset {}, not {}",
                        token.offset, check.len
                    ),
                ));
            }
        }
        Ok(token)
    }

    fn to_json(&self) -> Value {
        serde_json::to_value(self)
            .unwrap_or_else(|_| unreachable!("a token is integers and strings"))
    }
}

/// The bytes just before the current offset, for the next token's check.
#[derive(Debug, Default)]
struct Window(Vec<u8>);

impl Window {
    fn push(&mut self, bytes: &[u8]) {
        if bytes.len() >= CHECK_LEN {
            self.0.clear();
            self.0.extend_from_slice(&bytes[bytes.len() - CHECK_LEN..]);
        } else {
            self.0.extend_from_slice(bytes);
            let excess = self.0.len().saturating_sub(CHECK_LEN);
            self.0.drain(..excess);
        }
    }

    fn token(&self, offset: u64) -> Token {
        Token {
            offset,
            check: (!self.0.is_empty()).then(|| Check {
                len: self.0.len() as u64,
                fnv1a: Fnv1a(fnv1a(&self.0)),
            }),
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// One run over the file.
struct Tail<'a> {
    ctx: &'a RunContext,
    config: &'a Config,
    path: &'a Path,
    file: File,
    /// The file's length when the run began: the run reads no further, so it ends even while a
    /// producer keeps appending.
    len: u64,
    offset: u64,
    window: Window,
    output: Output,
    /// Lines and bytes written since the last checkpoint.
    pending: (u64, u64),
}

impl<'a> Tail<'a> {
    /// Opens the file at the token's offset after checking that the file is still the one the
    /// token was taken from.
    async fn open(
        ctx: &'a RunContext,
        config: &'a Config,
        token: Token,
    ) -> Result<Self, ConnectorError> {
        let path = config.input.as_path();
        let mut file = File::open(path).await.map_err(|e| input_error(path, &e))?;
        let len = file
            .metadata()
            .await
            .map_err(|e| input_error(path, &e))?
            .len();
        if len < token.offset {
            return Err(ConnectorError::permanent(format!(
                "tail: {} is {len} bytes, shorter than the cursor's offset {}: it was truncated \
                 or replaced; reset the cursor to read it from the start",
                path.display(),
                token.offset
            )));
        }
        let mut window = Window::default();
        if let Some(check) = token.check {
            let mut before = vec![0; usize::try_from(check.len).unwrap_or(CHECK_LEN)];
            file.seek(SeekFrom::Start(token.offset - check.len))
                .await
                .map_err(|e| input_error(path, &e))?;
            file.read_exact(&mut before)
                .await
                .map_err(|e| input_error(path, &e))?;
            if fnv1a(&before) != check.fnv1a.0 {
                return Err(ConnectorError::permanent(format!(
                    "tail: the bytes of {} before the cursor's offset {} changed: the file was \
                     replaced or rewritten; reset the cursor to read it from the start",
                    path.display(),
                    token.offset
                )));
            }
            window.push(&before);
        }
        file.seek(SeekFrom::Start(token.offset))
            .await
            .map_err(|e| input_error(path, &e))?;
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map_or(String::new(), |e| format!(".{e}"));
        let output = Output::new(
            config.output.join(config.stream.as_str()),
            format!("{}{extension}", ctx.run().id),
        );
        Ok(Self {
            ctx,
            config,
            path,
            file,
            len,
            offset: token.offset,
            window,
            output,
            pending: (0, 0),
        })
    }

    async fn copy(mut self) -> Result<(), ConnectorError> {
        let result = self.copy_lines().await;
        // Lines written after the last checkpoint were still read: count them however the copy
        // ended.
        if self.pending.0 > 0 {
            self.ctx
                .record(&self.config.stream, self.pending.0, self.pending.1);
        }
        result
    }

    async fn copy_lines(&mut self) -> Result<(), ConnectorError> {
        let remaining = self.len - self.offset;
        if remaining == 0 {
            return Ok(());
        }
        let file = self
            .file
            .try_clone()
            .await
            .map_err(|e| input_error(self.path, &e))?;
        let mut reader = BufReader::with_capacity(64 * 1024, file.take(remaining));
        let mut line = Vec::new();
        let mut observed = false;
        let mut line_number = 0u64;
        loop {
            self.ctx.check_cancelled()?;
            line.clear();
            let read = (&mut reader)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| {
                    ConnectorError::permanent(format!(
                        "cannot read {} after line {line_number} of this run: {e}",
                        self.path.display()
                    ))
                })?;
            if read > MAX_LINE_BYTES {
                return Err(ConnectorError::permanent(format!(
                    "{}: the line at byte {} is longer than {} MiB",
                    self.path.display(),
                    self.offset,
                    MAX_LINE_BYTES >> 20
                )));
            }
            // A line without its newline is still being written: the next run reads it whole.
            if read == 0 || !line.ends_with(b"\n") {
                break;
            }
            line_number += 1;
            if !observed {
                self.ctx
                    .observe_schema(&self.config.stream, line_schema())
                    .await?;
                observed = true;
            }
            self.output.write(&line).await?;
            self.offset += read as u64;
            self.window.push(&line);
            self.pending.0 += 1;
            self.pending.1 += read as u64;
            if self.pending.0 >= self.config.checkpoint_every() {
                self.checkpoint().await?;
            }
        }
        if self.pending.0 > 0 {
            self.checkpoint().await?;
        }
        Ok(())
    }

    /// Makes the output durable, then records the offset after it.
    async fn checkpoint(&mut self) -> Result<(), ConnectorError> {
        self.output.sync().await?;
        let (records, bytes) = std::mem::take(&mut self.pending);
        self.ctx.record(&self.config.stream, records, bytes);
        // Keeps the offset exact in JavaScript numbers (the Durable Object backend).
        if self.offset > MAX_SAFE_INTEGER as u64 {
            return Err(ConnectorError::permanent(format!(
                "tail: {} is past byte 2^53; its offset no longer fits the cursor",
                self.path.display()
            )));
        }
        let value = CursorValue::new(self.window.token(self.offset).to_json())
            .map_err(|e| ConnectorError::permanent(format!("tail: {e}")))?;
        self.ctx.checkpoint(&self.config.stream, value).await
    }
}

/// The schema of a tailed stream: one required text column per line.
fn line_schema() -> Schema {
    Schema::new(
        vec![Column::new("line", ColumnType::String, false)],
        Vec::new(),
    )
    .unwrap_or_else(|_| unreachable!("a one-column schema without a key is valid"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let mut window = Window::default();
        window.push(b"first line\n");
        let token = window.token(11);
        assert_eq!(Token::from_json(&token.to_json()), Ok(token));
        assert_eq!(
            Token::from_json(&json!({"offset": 0})),
            Ok(Token::default())
        );
        let zero = "0000000000000000";
        for (bad, expected) in [
            (json!(5), "invalid type: integer `5`, expected struct Token"),
            (json!({}), "missing field `offset`"),
            (
                json!({"offset": -1}),
                "offset: invalid value: integer `-1`, expected u64",
            ),
            (
                json!({"offset": 3, "check": {"len": 4, "fnv1a": zero}}),
                "check.len: must be no larger than 64 or the offset 3, not 4",
            ),
            (
                json!({"offset": 100, "check": {"len": 65, "fnv1a": zero}}),
                "check.len: must be no larger than 64 or the offset 100, not 65",
            ),
            (
                json!({"offset": 100, "check": {"len": 4, "fnv1a": "xyz"}}),
                "check.fnv1a: must be 16 hexadecimal digits",
            ),
            (
                json!({"offset": 100, "check": {"len": 4, "fnv1a": "+000000000000000"}}),
                "check.fnv1a: must be 16 hexadecimal digits",
            ),
            (
                json!({"offset": 100, "check": {"len": 4}}),
                "check: missing field `fnv1a`",
            ),
            (
                json!({"offset": 1, "extra": true}),
                "extra: unknown field `extra`, expected `offset` or `check`",
            ),
        ] {
            let error = Token::from_json(&bad).unwrap_err().to_string();
            assert_eq!(error, expected, "{bad}");
        }
    }

    #[test]
    fn tokens_are_written_as_documented() {
        let token = Token {
            offset: 11,
            check: Some(Check {
                len: 11,
                fnv1a: Fnv1a(0xab),
            }),
        };
        assert_eq!(
            token.to_json(),
            json!({"offset": 11, "check": {"len": 11, "fnv1a": "00000000000000ab"}})
        );
        assert_eq!(Token::default().to_json(), json!({"offset": 0}));
    }

    fn config(value: Value) -> Result<Config, String> {
        Config::decode(&ConnectorConfig::new(value).unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn configs_decode_and_refusals_name_the_field() {
        let good = config(json!({"input": "app.log", "output": "out", "stream": "app"})).unwrap();
        assert_eq!(good.input, PathBuf::from("app.log"));
        assert_eq!(good.stream.as_str(), "app");
        assert_eq!(good.checkpoint_every(), DEFAULT_CHECKPOINT_EVERY);
        let every = json!({"input": "i", "output": "o", "stream": "s", "checkpoint_every": 7});
        assert_eq!(config(every).unwrap().checkpoint_every(), 7);
        for (value, expected) in [
            (
                json!({"input": "i", "output": "o"}),
                "missing field `stream`",
            ),
            (
                json!({"input": "i", "output": "o", "stream": ".."}),
                "stream: names stream \"..\", which is not a single directory name",
            ),
            (
                json!({"input": "", "output": "o", "stream": "s"}),
                "input: must not be empty",
            ),
            (
                json!({"input": "i", "output": ["o"], "stream": "s"}),
                "output: invalid type: sequence, expected a string",
            ),
            (
                json!({"input": "i", "output": "o", "stream": "s", "checkpoint_every": -1}),
                "checkpoint_every: invalid value: integer `-1`, expected a positive integer",
            ),
            (
                json!({"input": "i", "output": "o", "stream": "s", "streams": ["s"]}),
                "streams: unknown field `streams`, expected one of `input`, `output`, `stream`",
            ),
        ] {
            let error = config(value.clone())
                .err()
                .unwrap_or_else(|| panic!("{value}"));
            assert!(error.starts_with(expected), "{value}: {error}");
        }
    }

    #[test]
    fn the_window_keeps_the_last_bytes() {
        let mut window = Window::default();
        window.push(&[b'a'; 40]);
        window.push(&[b'b'; 40]);
        assert_eq!(window.0.len(), CHECK_LEN);
        assert_eq!(&window.0[..24], &[b'a'; 24]);
        window.push(&[b'c'; 100]);
        assert_eq!(window.0, vec![b'c'; CHECK_LEN]);
    }
}
