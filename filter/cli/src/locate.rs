//! Where a subset-router configuration sits in the files operators keep it in, down to the bytes
//! of one split's weights — so `set-weights` can change those bytes and nothing else.
//!
//! A file is parsed into a tree of [`Node`]s that remember their byte span in the file: JSON with
//! a small span-keeping reader (after `serde_json` has accepted it), YAML with `saphyr-parser`'s
//! event spans. The configurations are then found by shape ([`discover`]):
//!
//! * a plain plugin configuration (the document itself: a mapping with `default`);
//! * Envoy's Wasm filter (`@type …filters.http.wasm.v3.Wasm`: `config.configuration`) and dynamic
//!   module filter (`@type …dynamic_modules.v3.DynamicModuleFilter`: `filter_config`), wherever
//!   they are nested — listeners, ECDS `resources[]`, `typed_per_filter_config`, an Istio
//!   EnvoyFilter patch; the `Any` is a `StringValue` holding the JSON (a YAML literal block, a
//!   quoted string, a JSON string) or a `Struct` mapping; also `TypedStruct` wrappers;
//! * the dynamic module cluster specifier (`@type …dynamic_modules.v3.DynamicModuleClusterSpecifier`:
//!   `specifier_config`), the route form of the native build;
//! * an Istio `WasmPlugin` (`spec.pluginConfig`);
//! * an Envoy Gateway `EnvoyExtensionPolicy` (`spec.wasm[].config`, `spec.dynamicModule[].config`).
//!
//! Of those, the ones whose content is a mapping with a `default` key (required in every
//! subset-router configuration) are subset-router's; other plugins' configurations are skipped.
//!
//! A configuration embedded in a string is decoded with a map from each decoded byte back to
//! the file ([`Decoded`]); the decoding is checked against the YAML parser's (or `serde_json`'s)
//! own, so a string this module cannot map is refused rather than edited at a wrong place.

use std::ops::Range;

use saphyr_parser::{Event, Parser, ScalarStyle};
use subset_router_core::error::quoted;

/// A parsed value and its byte span (in the file, or in a [`Decoded`] string's text).
#[derive(Debug, Clone)]
pub struct Node {
    pub span: Range<usize>,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Map(Vec<(Node, Node)>),
    Seq(Vec<Node>),
    Scalar {
        value: String,
        style: Style,
    },
    /// A YAML alias (`*name`): not followed.
    Alias,
}

/// How a scalar is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
    /// A JSON string (`"…"`).
    JsonString,
    /// A JSON number, `true`, `false` or `null`.
    JsonBare,
}

impl Node {
    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.scalar() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// A scalar's value (strings, and the text of numbers and booleans).
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    pub fn items(&self) -> &[Node] {
        match &self.kind {
            Kind::Seq(items) => items,
            _ => &[],
        }
    }

    pub fn is_map(&self) -> bool {
        matches!(self.kind, Kind::Map(_))
    }

    /// The scalar at `path` (mapping keys).
    fn text_at(&self, path: &[&str]) -> Option<&str> {
        path.iter()
            .try_fold(self, |node, key| node.get(key))
            .and_then(Node::scalar)
    }

    /// The node converted to JSON the way a YAML or JSON reader hands it on (YAML 1.2 core
    /// schema for plain scalars).
    pub fn to_json(&self) -> Result<serde_json::Value, String> {
        use serde_json::Value;
        Ok(match &self.kind {
            Kind::Map(entries) => {
                let mut object = serde_json::Map::new();
                for (key, value) in entries {
                    let key = key
                        .scalar()
                        .ok_or("a mapping key that is not a scalar")?
                        .to_owned();
                    object.insert(key, value.to_json()?);
                }
                Value::Object(object)
            }
            Kind::Seq(items) => {
                Value::Array(items.iter().map(Node::to_json).collect::<Result<_, _>>()?)
            }
            Kind::Scalar { value, style } => match style {
                Style::Plain => plain_yaml_scalar(value),
                Style::JsonBare => serde_json::from_str(value).map_err(|e| e.to_string())?,
                _ => Value::String(value.clone()),
            },
            Kind::Alias => return Err("a YAML alias (*name) in the configuration".into()),
        })
    }
}

/// A plain YAML scalar resolved by the YAML 1.2 core schema.
fn plain_yaml_scalar(text: &str) -> serde_json::Value {
    use serde_json::Value;
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = text.trim_start_matches('+').parse::<i64>() {
            return Value::from(n);
        }
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(n) = i64::from_str_radix(hex, 16) {
            return Value::from(n);
        }
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(n) = i64::from_str_radix(oct, 8) {
            return Value::from(n);
        }
    }
    let float_like = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && text.bytes().any(|b| b.is_ascii_digit());
    if float_like {
        if let Some(n) = text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
        {
            return Value::Number(n);
        }
    }
    Value::String(text.to_owned())
}

/// Whether the file is JSON (else YAML).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

/// The file's documents (JSON: one).
pub fn parse_file(text: &str) -> Result<(Format, Vec<Node>), String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(_) => Ok((Format::Json, vec![parse_json(text)?])),
        Err(json_error) => match parse_yaml(text) {
            Ok(docs) => Ok((Format::Yaml, docs)),
            Err(yaml_error) => {
                if text.trim_start().starts_with(['{', '[']) {
                    Err(format!("not valid JSON: {json_error}"))
                } else {
                    Err(format!("not valid YAML: {yaml_error}"))
                }
            }
        },
    }
}

// ---- JSON with spans ------------------------------------------------------------------------

/// Reads JSON that `serde_json` has accepted into [`Node`]s with byte spans.
pub fn parse_json(text: &str) -> Result<Node, String> {
    let mut reader = JsonReader {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    reader.skip_ws();
    let node = reader.value()?;
    reader.skip_ws();
    if reader.pos != reader.bytes.len() {
        return Err(format!("trailing characters at byte {}", reader.pos));
    }
    Ok(node)
}

struct JsonReader<'t> {
    text: &'t str,
    bytes: &'t [u8],
    pos: usize,
}

impl JsonReader<'_> {
    fn skip_ws(&mut self) {
        while self
            .bytes
            .get(self.pos)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", byte as char, self.pos))
        }
    }

    fn value(&mut self) -> Result<Node, String> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                let mut entries = Vec::new();
                self.skip_ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                } else {
                    loop {
                        self.skip_ws();
                        let key = self.string()?;
                        self.expect(b':')?;
                        let value = self.value()?;
                        entries.push((key, value));
                        self.skip_ws();
                        match self.peek() {
                            Some(b',') => self.pos += 1,
                            Some(b'}') => {
                                self.pos += 1;
                                break;
                            }
                            _ => return Err(format!("expected ',' or '}}' at byte {}", self.pos)),
                        }
                    }
                }
                Ok(Node {
                    span: start..self.pos,
                    kind: Kind::Map(entries),
                })
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                self.skip_ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                } else {
                    loop {
                        items.push(self.value()?);
                        self.skip_ws();
                        match self.peek() {
                            Some(b',') => self.pos += 1,
                            Some(b']') => {
                                self.pos += 1;
                                break;
                            }
                            _ => return Err(format!("expected ',' or ']' at byte {}", self.pos)),
                        }
                    }
                }
                Ok(Node {
                    span: start..self.pos,
                    kind: Kind::Seq(items),
                })
            }
            Some(b'"') => self.string(),
            Some(_) => {
                while self
                    .peek()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.'))
                {
                    self.pos += 1;
                }
                if self.pos == start {
                    return Err(format!("unexpected character at byte {start}"));
                }
                Ok(Node {
                    span: start..self.pos,
                    kind: Kind::Scalar {
                        value: self.text[start..self.pos].to_owned(),
                        style: Style::JsonBare,
                    },
                })
            }
            None => Err("unexpected end of JSON".into()),
        }
    }

    fn string(&mut self) -> Result<Node, String> {
        let start = self.pos;
        if self.peek() != Some(b'"') {
            return Err(format!("expected a string at byte {start}"));
        }
        self.pos += 1;
        loop {
            match self.peek() {
                Some(b'"') => break,
                Some(b'\\') => self.pos += 2,
                Some(_) => self.pos += 1,
                None => return Err("unterminated string".into()),
            }
        }
        self.pos += 1;
        let span = start..self.pos;
        let decoded = decode_json_string(self.text, span.clone())?;
        Ok(Node {
            span,
            kind: Kind::Scalar {
                value: decoded.text,
                style: Style::JsonString,
            },
        })
    }
}

// ---- YAML with spans ------------------------------------------------------------------------

enum Open {
    Map {
        start: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
    Seq {
        start: usize,
        items: Vec<Node>,
    },
}

/// Every document of a YAML stream, with byte spans.
pub fn parse_yaml(text: &str) -> Result<Vec<Node>, String> {
    // saphyr's markers count characters; spans here are bytes.
    let mut byte_at: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    byte_at.push(text.len());
    let byte = |chars: usize| byte_at.get(chars).copied().unwrap_or(text.len());
    let mut docs = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    let push = |stack: &mut Vec<Open>, docs: &mut Vec<Node>, node: Node| match stack.last_mut() {
        None => docs.push(node),
        Some(Open::Seq { items, .. }) => items.push(node),
        Some(Open::Map { entries, key, .. }) => match key.take() {
            None => *key = Some(node),
            Some(k) => entries.push((k, node)),
        },
    };
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            format!(
                "{} at line {} column {}",
                e.info(),
                e.marker().line(),
                e.marker().col() + 1
            )
        })?;
        let span = byte(span.start.index())..byte(span.end.index());
        match event {
            Event::Scalar(value, style, _, _) => {
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted => Style::SingleQuoted,
                    ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                    ScalarStyle::Literal => Style::Literal,
                    ScalarStyle::Folded => Style::Folded,
                };
                let node = Node {
                    span,
                    kind: Kind::Scalar {
                        value: value.into_owned(),
                        style,
                    },
                };
                push(&mut stack, &mut docs, node);
            }
            Event::Alias(_) => push(
                &mut stack,
                &mut docs,
                Node {
                    span,
                    kind: Kind::Alias,
                },
            ),
            Event::SequenceStart(..) => stack.push(Open::Seq {
                start: span.start,
                items: Vec::new(),
            }),
            Event::MappingStart(..) => stack.push(Open::Map {
                start: span.start,
                entries: Vec::new(),
                key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match stack.pop() {
                    Some(Open::Seq { start, items }) => Node {
                        span: start..span.end.max(start),
                        kind: Kind::Seq(items),
                    },
                    Some(Open::Map { start, entries, .. }) => Node {
                        span: start..span.end.max(start),
                        kind: Kind::Map(entries),
                    },
                    None => return Err("unbalanced YAML events".into()),
                };
                push(&mut stack, &mut docs, node);
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
    }
    Ok(docs)
}

// ---- strings decoded with a map back to the file --------------------------------------------

/// A string scalar's value, and for each of its bytes the file offset it was written at.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub text: String,
    pub origin: Vec<usize>,
}

impl Decoded {
    fn new() -> Self {
        Self {
            text: String::new(),
            origin: Vec::new(),
        }
    }

    fn push(&mut self, c: char, at: usize) {
        self.text.push(c);
        self.origin.extend(std::iter::repeat_n(at, c.len_utf8()));
    }

    /// A character copied as written: each byte maps to its own offset.
    fn copy(&mut self, c: char, at: usize) {
        self.text.push(c);
        self.origin.extend(at..at + c.len_utf8());
    }

    /// Removes the last `n` bytes (ASCII white space).
    fn truncate_by(&mut self, n: usize) {
        let len = self.text.len().saturating_sub(n);
        self.text.truncate(len);
        self.origin.truncate(len);
    }

    /// The file bytes of decoded range `range`, if it was written there as is (no escapes, no
    /// line break inside).
    pub fn file_span(&self, file: &str, range: Range<usize>) -> Option<Range<usize>> {
        let start = *self.origin.get(range.start)?;
        let end = start + range.len();
        let contiguous = range
            .clone()
            .enumerate()
            .all(|(k, i)| self.origin.get(i) == Some(&(start + k)));
        (contiguous && file.get(start..end) == self.text.get(range)).then_some(start..end)
    }
}

/// Decodes a string scalar of the file with the origin of every byte, checked against the
/// parser's value: a string this cannot map is an error, never a guess.
pub fn decode_scalar(file: &str, node: &Node) -> Result<Decoded, String> {
    let Kind::Scalar { value, style } = &node.kind else {
        return Err("not a string".into());
    };
    let span = node.span.clone();
    let decoded = match style {
        Style::JsonString => decode_json_string(file, span)?,
        Style::DoubleQuoted => decode_double_quoted(file, span)?,
        Style::SingleQuoted => decode_single_quoted(file, span)?,
        Style::Literal => decode_literal(file, span, value)?,
        Style::Plain if !value.contains('\n') && file.get(span.clone()) == Some(value.as_str()) => {
            let mut d = Decoded::new();
            for (i, c) in value.char_indices() {
                d.copy(c, span.start + i);
            }
            d
        }
        Style::Folded | Style::Plain | Style::JsonBare => {
            return Err(format!(
                "a {} string: write the configuration as a literal block (`value: |`) or a quoted string",
                match style {
                    Style::Folded => "folded (>)",
                    _ => "plain multi-line",
                }
            ))
        }
    };
    let agrees = match style {
        // Chomping (|, |-, |+) only changes the trailing line breaks.
        Style::Literal => decoded.text.trim_end_matches('\n') == value.trim_end_matches('\n'),
        _ => &decoded.text == value,
    };
    if agrees {
        Ok(decoded)
    } else {
        Err(format!(
            "cannot map this {style:?} string back to the file; write it as a literal block (`value: |`)"
        ))
    }
}

fn hex_char(text: &str) -> Option<char> {
    u32::from_str_radix(text, 16).ok().and_then(char::from_u32)
}

/// A JSON string literal (`span` includes the quotes); checked against `serde_json`.
pub fn decode_json_string(file: &str, span: Range<usize>) -> Result<Decoded, String> {
    let raw = file
        .get(span.start + 1..span.end.saturating_sub(1))
        .ok_or("bad string span")?;
    let base = span.start + 1;
    let mut out = Decoded::new();
    let mut chars = raw.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.copy(c, base + i);
            continue;
        }
        let Some((_, e)) = chars.next() else {
            return Err("a string ends in a backslash".into());
        };
        let decoded = match e {
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let hex = raw.get(i + 2..i + 6).ok_or("short \\u escape")?;
                for _ in 0..4 {
                    chars.next();
                }
                let unit = u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                if (0xD800..0xDC00).contains(&unit) {
                    let low = raw
                        .get(i + 6..i + 12)
                        .and_then(|s| s.strip_prefix("\\u"))
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .ok_or("unpaired surrogate")?;
                    for _ in 0..6 {
                        chars.next();
                    }
                    char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low.wrapping_sub(0xDC00)))
                        .ok_or("bad surrogate pair")?
                } else {
                    char::from_u32(unit).ok_or("bad \\u escape")?
                }
            }
            other => return Err(format!("unknown escape \\{other}")),
        };
        out.push(decoded, base + i);
    }
    let expected: String = serde_json::from_str(&file[span]).map_err(|e| e.to_string())?;
    if out.text == expected {
        Ok(out)
    } else {
        Err("cannot map this JSON string back to the file".into())
    }
}

/// After a line break inside a flow scalar (quoted): skips the next lines' leading white space
/// and counts the empty lines. Returns (position after, empty lines).
fn fold(raw: &str, mut pos: usize) -> (usize, usize) {
    let bytes = raw.as_bytes();
    let mut empty = 0;
    loop {
        while bytes.get(pos).is_some_and(|b| matches!(b, b' ' | b'\t')) {
            pos += 1;
        }
        match bytes.get(pos) {
            Some(b'\r') if bytes.get(pos + 1) == Some(&b'\n') => {
                pos += 2;
                empty += 1;
            }
            Some(b'\n' | b'\r') => {
                pos += 1;
                empty += 1;
            }
            _ => return (pos, empty),
        }
    }
}

/// Length of the line break at `pos` (0 if none).
fn line_break(bytes: &[u8], pos: usize) -> usize {
    match bytes.get(pos) {
        Some(b'\r') if bytes.get(pos + 1) == Some(&b'\n') => 2,
        Some(b'\n' | b'\r') => 1,
        _ => 0,
    }
}

/// Folds a line break at `pos` of `raw` into `out` (trailing white space trimmed, then one space
/// or the empty lines as line feeds); returns the position to continue at.
fn fold_into(out: &mut Decoded, raw: &str, base: usize, pos: usize, trailing: usize) -> usize {
    out.truncate_by(trailing);
    let (next, empty) = fold(raw, pos + line_break(raw.as_bytes(), pos));
    if empty == 0 {
        out.push(' ', base + pos);
    } else {
        for _ in 0..empty {
            out.push('\n', base + pos);
        }
    }
    next
}

fn decode_double_quoted(file: &str, span: Range<usize>) -> Result<Decoded, String> {
    let raw = file
        .get(span.start + 1..span.end.saturating_sub(1))
        .ok_or("bad string span")?;
    let base = span.start + 1;
    let bytes = raw.as_bytes();
    let mut out = Decoded::new();
    let mut pos = 0;
    // Literal spaces and tabs at the end of `out`, trimmed when the line is folded.
    let mut trailing = 0;
    while let Some(c) = raw.get(pos..).and_then(|r| r.chars().next()) {
        match c {
            '\\' => {
                let breaks = line_break(bytes, pos + 1);
                if breaks > 0 {
                    // Escaped line break: joined without a space, next line's indent dropped.
                    let (next, empty) = fold(raw, pos + 1 + breaks);
                    for _ in 0..empty {
                        out.push('\n', base + pos);
                    }
                    pos = next;
                    trailing = 0;
                    continue;
                }
                let e = raw.get(pos + 1..).and_then(|r| r.chars().next());
                let (decoded, len) = match e {
                    Some('0') => ('\0', 2),
                    Some('a') => ('\u{7}', 2),
                    Some('b') => ('\u{8}', 2),
                    Some('t' | '\t') => ('\t', 2),
                    Some('n') => ('\n', 2),
                    Some('v') => ('\u{b}', 2),
                    Some('f') => ('\u{c}', 2),
                    Some('r') => ('\r', 2),
                    Some('e') => ('\u{1b}', 2),
                    Some(' ') => (' ', 2),
                    Some('"') => ('"', 2),
                    Some('/') => ('/', 2),
                    Some('\\') => ('\\', 2),
                    Some('N') => ('\u{85}', 2),
                    Some('_') => ('\u{a0}', 2),
                    Some('L') => ('\u{2028}', 2),
                    Some('P') => ('\u{2029}', 2),
                    Some(k @ ('x' | 'u' | 'U')) => {
                        let n = match k {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex = raw.get(pos + 2..pos + 2 + n).ok_or("short escape")?;
                        (hex_char(hex).ok_or("bad escape")?, 2 + n)
                    }
                    _ => return Err("unknown escape in a double-quoted string".into()),
                };
                out.push(decoded, base + pos);
                pos += len;
                trailing = 0;
            }
            '\n' | '\r' => {
                pos = fold_into(&mut out, raw, base, pos, trailing);
                trailing = 0;
            }
            ' ' | '\t' => {
                out.copy(c, base + pos);
                pos += 1;
                trailing += 1;
            }
            c => {
                out.copy(c, base + pos);
                pos += c.len_utf8();
                trailing = 0;
            }
        }
    }
    Ok(out)
}

fn decode_single_quoted(file: &str, span: Range<usize>) -> Result<Decoded, String> {
    let raw = file
        .get(span.start + 1..span.end.saturating_sub(1))
        .ok_or("bad string span")?;
    let base = span.start + 1;
    let mut out = Decoded::new();
    let mut pos = 0;
    let mut trailing = 0;
    while let Some(c) = raw.get(pos..).and_then(|r| r.chars().next()) {
        match c {
            '\'' => {
                // '' is one quote.
                out.push('\'', base + pos);
                pos += 2;
                trailing = 0;
            }
            '\n' | '\r' => {
                pos = fold_into(&mut out, raw, base, pos, trailing);
                trailing = 0;
            }
            ' ' | '\t' => {
                out.copy(c, base + pos);
                pos += 1;
                trailing += 1;
            }
            c => {
                out.copy(c, base + pos);
                pos += c.len_utf8();
                trailing = 0;
            }
        }
    }
    Ok(out)
}

/// A literal block (`|`): saphyr's span starts at the first content character, after the
/// indentation, which every content line carries.
fn decode_literal(file: &str, span: Range<usize>, value: &str) -> Result<Decoded, String> {
    let line_start = file
        .get(..span.start)
        .and_then(|head| head.rfind('\n'))
        .map_or(0, |i| i + 1);
    let indent = span.start - line_start;
    if !file
        .get(line_start..span.start)
        .is_some_and(|pad| pad.bytes().all(|b| b == b' '))
    {
        return Err("unexpected indentation of a literal block".into());
    }
    let want = value.trim_end_matches('\n').len();
    let mut out = Decoded::new();
    // Empty lines before the first content line (the span starts at that line).
    for _ in 0..value.len() - value.trim_start_matches('\n').len() {
        out.push('\n', line_start.saturating_sub(1));
    }
    let mut pos = line_start;
    while out.text.len() < want && pos < file.len() {
        let end = file[pos..].find('\n').map_or(file.len(), |i| pos + i);
        let line = &file[pos..end];
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.len() <= indent && line.bytes().all(|b| b == b' ') {
            // An empty (or indentation-only) line.
        } else {
            if !line.as_bytes().iter().take(indent).all(|&b| b == b' ') {
                return Err("a literal block line is less indented than the block".into());
            }
            for (i, c) in line[indent..].char_indices() {
                out.copy(c, pos + indent + i);
            }
        }
        if end < file.len() {
            out.push('\n', end);
        }
        pos = end + 1;
    }
    Ok(out)
}

// ---- the configurations in a file -----------------------------------------------------------

/// Where a configuration's content is.
#[derive(Debug, Clone)]
pub enum Content {
    /// The file's own tree: spans are file offsets (a plain config, a WasmPlugin's
    /// `pluginConfig`, a policy's `config`, a `Struct`).
    Tree,
    /// A string holding the JSON: spans are offsets in `decoded.text`.
    Embedded(Decoded),
}

/// One subset-router configuration in the file.
#[derive(Debug, Clone)]
pub struct Found {
    /// Where it is, for messages (`WasmPlugin default/subset-router: spec.pluginConfig`).
    pub label: String,
    pub root: Node,
    pub content: Content,
    /// The configuration is the whole file, as the filter reads it.
    pub whole_file: bool,
    /// The configuration is the file's only document, not inside anything else: messages name
    /// the file alone, without [`Self::label`].
    pub bare: bool,
}

impl Found {
    /// The configuration exactly as the filter receives it (a tree: as JSON).
    pub fn config_json(&self, file: &str) -> Result<Vec<u8>, String> {
        match &self.content {
            _ if self.whole_file => Ok(file.as_bytes().to_vec()),
            Content::Embedded(decoded) => Ok(decoded.text.clone().into_bytes()),
            Content::Tree => serde_json::to_vec(&self.root.to_json()?).map_err(|e| e.to_string()),
        }
    }

    /// The file bytes of `span` (a span of [`Self::root`]'s coordinates).
    pub fn file_span(&self, file: &str, span: Range<usize>) -> Option<Range<usize>> {
        match &self.content {
            Content::Tree => Some(span),
            Content::Embedded(decoded) => decoded.file_span(file, span),
        }
    }
}

/// What [`discover`] found, and the candidates it set aside (with why) for the "nothing found"
/// message.
#[derive(Debug, Default)]
pub struct Discovery {
    pub found: Vec<Found>,
    pub skipped: Vec<String>,
}

/// Every subset-router configuration in the file's documents.
pub fn discover(file: &str, format: Format, docs: &[Node]) -> Discovery {
    let mut out = Discovery::default();
    for (i, doc) in docs.iter().enumerate() {
        let prefix = if docs.len() > 1 {
            format!("document {}: ", i + 1)
        } else {
            String::new()
        };
        let mut walker = Walker {
            file,
            prefix,
            out: &mut out,
        };
        if is_plugin_config(doc) && doc.get("kind").is_none() && doc.get("apiVersion").is_none() {
            // A JSON file is the configuration byte for byte; a YAML one is converted.
            let whole_file = format == Format::Json;
            let bare = docs.len() == 1;
            walker.take_tree(doc, "plugin configuration", whole_file, bare);
        } else {
            walker.walk(doc, "");
        }
    }
    out
}

/// The shape of a subset-router configuration: a mapping with `default`.
fn is_plugin_config(node: &Node) -> bool {
    node.is_map() && node.get("default").is_some()
}

struct Walker<'a> {
    file: &'a str,
    prefix: String,
    out: &'a mut Discovery,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn type_is(node: &Node, key: &str, suffix: &str) -> bool {
    node.get(key)
        .and_then(Node::scalar)
        .is_some_and(|t| t.ends_with(suffix))
}

const WASM: &str = "envoy.extensions.filters.http.wasm.v3.Wasm";
const WASM_PLUGIN_CONFIG: &str = "envoy.extensions.wasm.v3.PluginConfig";
const DYNAMIC_MODULE: &str = "envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter";
const CLUSTER_SPECIFIER: &str =
    "envoy.extensions.router.cluster_specifiers.dynamic_modules.v3.DynamicModuleClusterSpecifier";

/// What [`discover`] looks for, for the message when a file holds none.
pub const LOOKED_FOR: &str = "looked for a plugin configuration, Envoy's Wasm filter \
    (config.configuration), dynamic module filter (filter_config) or dynamic module cluster \
    specifier (specifier_config), an Istio WasmPlugin's spec.pluginConfig, an \
    EnvoyExtensionPolicy's spec.wasm[].config or spec.dynamicModule[].config";

impl Walker<'_> {
    fn walk(&mut self, node: &Node, path: &str) {
        match &node.kind {
            Kind::Map(entries) => {
                self.slots_of(node, path);
                for (key, value) in entries {
                    if let Some(key) = key.scalar() {
                        self.walk(value, &join(path, key));
                    }
                }
            }
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.walk(item, &format!("{path}[{i}]"));
                }
            }
            Kind::Scalar { .. } | Kind::Alias => {}
        }
    }

    /// The configuration slots a mapping defines (if it is one of the known kinds).
    fn slots_of(&mut self, node: &Node, path: &str) {
        let kind = node.text_at(&["kind"]);
        let object = || {
            let name = node.text_at(&["metadata", "name"]).unwrap_or("?");
            match node.text_at(&["metadata", "namespace"]) {
                Some(ns) => format!("{} {ns}/{name}", kind.unwrap_or("")),
                None => format!("{} {name}", kind.unwrap_or("")),
            }
        };
        match kind {
            Some("WasmPlugin") => {
                if let Some(config) = node.get("spec").and_then(|s| s.get("pluginConfig")) {
                    self.take_tree(
                        config,
                        &format!("{}: spec.pluginConfig", object()),
                        false,
                        false,
                    );
                }
            }
            Some("EnvoyExtensionPolicy") => {
                for list in ["wasm", "dynamicModule"] {
                    let entries = node.get("spec").and_then(|s| s.get(list));
                    for (i, entry) in entries.map_or(&[][..], Node::items).iter().enumerate() {
                        if let Some(config) = entry.get("config") {
                            let label = format!("{}: spec.{list}[{i}].config", object());
                            self.take_tree(config, &label, false, false);
                        }
                    }
                }
            }
            _ => {}
        }
        let at = |key: &str| join(path, key);
        if type_is(node, "@type", WASM) {
            if let Some(any) = node.get("config").and_then(|c| c.get("configuration")) {
                self.take_any(any, &at("config.configuration"));
            }
        }
        if type_is(node, "@type", WASM_PLUGIN_CONFIG) {
            if let Some(any) = node.get("configuration") {
                self.take_any(any, &at("configuration"));
            }
        }
        if type_is(node, "@type", DYNAMIC_MODULE) {
            if let Some(any) = node.get("filter_config") {
                self.take_any(any, &at("filter_config"));
            }
        }
        if type_is(node, "@type", CLUSTER_SPECIFIER) {
            if let Some(any) = node.get("specifier_config") {
                self.take_any(any, &at("specifier_config"));
            }
        }
        // udpa.type.v1.TypedStruct / xds.type.v3.TypedStruct (Istio EnvoyFilter patches).
        if let Some(value) = node.get("value").filter(|_| node.get("type_url").is_some()) {
            if type_is(node, "type_url", WASM) {
                if let Some(any) = value.get("config").and_then(|c| c.get("configuration")) {
                    self.take_any(any, &at("value.config.configuration"));
                }
            } else if type_is(node, "type_url", DYNAMIC_MODULE) {
                if let Some(any) = value.get("filter_config") {
                    self.take_any(any, &at("value.filter_config"));
                }
            } else if type_is(node, "type_url", CLUSTER_SPECIFIER) {
                if let Some(any) = value.get("specifier_config") {
                    self.take_any(any, &at("value.specifier_config"));
                }
            }
        }
    }

    /// A `google.protobuf.Any`: a StringValue's string, or a Struct's mapping.
    fn take_any(&mut self, any: &Node, path: &str) {
        let Some(value) = any.get("value") else {
            return;
        };
        if type_is(any, "@type", "google.protobuf.StringValue") {
            self.take_embedded(value, &join(path, "value"));
        } else if type_is(any, "@type", "google.protobuf.Struct") {
            self.take_tree(value, &join(path, "value"), false, false);
        }
    }

    fn take_tree(&mut self, node: &Node, label: &str, whole_file: bool, bare: bool) {
        let label = format!("{}{label}", self.prefix);
        if is_plugin_config(node) {
            self.out.found.push(Found {
                label,
                root: node.clone(),
                content: Content::Tree,
                whole_file,
                bare,
            });
        } else {
            self.out.skipped.push(format!(
                "{label}: not a subset-router configuration (no \"default\")"
            ));
        }
    }

    fn take_embedded(&mut self, node: &Node, label: &str) {
        let label = format!("{}{label}", self.prefix);
        if node.scalar().is_none() {
            self.out.skipped.push(format!("{label}: not a string"));
            return;
        }
        let parsed = decode_scalar(self.file, node).and_then(|decoded| {
            serde_json::from_str::<serde_json::Value>(&decoded.text)
                .map_err(|e| format!("not JSON: {e}"))?;
            let root = parse_json(&decoded.text)?;
            Ok((decoded, root))
        });
        match parsed {
            Ok((decoded, root)) if is_plugin_config(&root) => self.out.found.push(Found {
                label,
                root,
                content: Content::Embedded(decoded),
                whole_file: false,
                bare: false,
            }),
            Ok(_) => self.out.skipped.push(format!(
                "{label}: not a subset-router configuration (no \"default\")"
            )),
            Err(e) => self.out.skipped.push(format!("{label}: {e}")),
        }
    }
}

// ---- one split of a configuration -----------------------------------------------------------

/// A split's entries, with where each weight is written.
#[derive(Debug, Clone)]
pub struct SplitAt {
    /// JSON path of the split (`rules[1].route.split`, `default.split`).
    pub path: String,
    /// The rule's index in `rules`, `None` for `default`.
    pub rule_index: Option<usize>,
    pub entries: Vec<EntryAt>,
}

#[derive(Debug, Clone)]
pub struct EntryAt {
    pub subset: String,
    pub weight: i64,
    /// The weight's bytes in the file.
    pub file_span: Range<usize>,
}

/// Why a split could not be located.
#[derive(Debug)]
pub enum SplitError {
    UnknownRule { known: Vec<String> },
    NotASplit { subset: Option<String> },
    Unreadable(String),
}

/// Rule `rule`'s split (`default`: the default route) in `found`.
pub fn locate_split(file: &str, found: &Found, rule: &str) -> Result<SplitAt, SplitError> {
    let root = &found.root;
    let (route, path, rule_index) = if rule == "default" {
        let route = root
            .get("default")
            .ok_or(SplitError::UnknownRule { known: Vec::new() })?;
        (route, "default".to_owned(), None)
    } else {
        let rules = root.get("rules").map_or(&[][..], Node::items);
        let index = rules
            .iter()
            .position(|r| r.get("name").and_then(Node::scalar) == Some(rule))
            .ok_or_else(|| SplitError::UnknownRule {
                known: rules
                    .iter()
                    .filter_map(|r| r.get("name").and_then(Node::scalar))
                    .map(str::to_owned)
                    .chain(std::iter::once("default".to_owned()))
                    .collect(),
            })?;
        let route = rules
            .get(index)
            .and_then(|r| r.get("route"))
            .ok_or_else(|| SplitError::Unreadable(format!("rules[{index}] has no route")))?;
        (route, format!("rules[{index}].route"), Some(index))
    };
    let Some(split) = route.get("split") else {
        return Err(SplitError::NotASplit {
            subset: route
                .get("subset")
                .and_then(Node::scalar)
                .map(str::to_owned),
        });
    };
    let path = format!("{path}.split");
    let Kind::Seq(items) = &split.kind else {
        return Err(SplitError::Unreadable(format!("{path} is not a list")));
    };
    let mut entries = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let bad = |what: &str| SplitError::Unreadable(format!("{path}[{i}]{what}"));
        let subset = item
            .get("subset")
            .and_then(Node::scalar)
            .ok_or_else(|| bad(".subset is missing"))?;
        let weight = item
            .get("weight")
            .ok_or_else(|| bad(".weight is missing"))?;
        let Kind::Scalar { value, style } = &weight.kind else {
            return Err(bad(".weight is not a number"));
        };
        if !matches!(style, Style::Plain | Style::JsonBare) {
            return Err(bad(".weight is a string, not a number"));
        }
        let number: i64 = value
            .parse()
            .map_err(|_| bad(&format!(".weight: {} is not an integer", quoted(value))))?;
        let file_span = found
            .file_span(file, weight.span.clone())
            .filter(|s| file.get(s.clone()) == Some(value.as_str()))
            .ok_or_else(|| bad(".weight cannot be located in the file (written with escapes?)"))?;
        entries.push(EntryAt {
            subset: subset.to_owned(),
            weight: number,
            file_span,
        });
    }
    Ok(SplitAt {
        path,
        rule_index,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights_of(file: &str, rule: &str) -> Vec<(String, i64, String)> {
        let (format, docs) = parse_file(file).unwrap();
        let found = discover(file, format, &docs).found;
        found
            .iter()
            .flat_map(|f| locate_split(file, f, rule).unwrap().entries)
            .map(|e| (e.subset, e.weight, file[e.file_span].to_owned()))
            .collect()
    }

    const CONFIG: &str = r#"{"rules":[{"name":"canary","route":{"split":[{"subset":"v1","weight":90},{"subset":"v2","weight":10}]}}],"default":{"subset":"v1"}}"#;

    #[test]
    fn weights_in_every_string_style() {
        let expected = vec![
            ("v1".to_owned(), 90, "90".to_owned()),
            ("v2".to_owned(), 10, "10".to_owned()),
        ];
        let wasm = |value: &str| {
            format!(
                "# c\nfilter:\n  \"@type\": type.googleapis.com/{WASM}\n  config:\n    configuration:\n      \"@type\": type.googleapis.com/google.protobuf.StringValue\n      value: {value}\n"
            )
        };
        let literal = format!("|\n        {CONFIG}\n");
        let double = serde_json::to_string(CONFIG).unwrap();
        let single = format!("'{CONFIG}'");
        let folded_double = "\"{\\\"rules\\\":[{\\\"name\\\":\\\"canary\\\",\n        \\\"route\\\":{\\\"split\\\":[{\\\"subset\\\":\\\"v1\\\",\\\"weight\\\":90},{\\\"subset\\\":\\\"v2\\\",\\\"weight\\\":10}]}}],\\\n        \\\"default\\\":{\\\"subset\\\":\\\"v1\\\"}}\"";
        let literal_keep = format!("|+\n\n        {CONFIG}\n\n      # comment\n");
        let literal_lines = format!(
            "|-\n        {}\n",
            CONFIG.replace(",", ",\n\n          ").replace(
                "\n\n          {\"subset\":\"v2",
                "\n        {\"subset\":\"v2"
            )
        );
        for value in [
            literal.as_str(),
            &literal_keep,
            &literal_lines,
            &double,
            &single,
            folded_double,
        ] {
            assert_eq!(weights_of(&wasm(value), "canary"), expected, "{value}");
        }
        assert_eq!(weights_of(CONFIG, "canary"), expected);
        let json_envoy = format!(
            r#"{{"typed_config":{{"@type":"type.googleapis.com/{DYNAMIC_MODULE}","filter_config":{{"@type":"type.googleapis.com/google.protobuf.StringValue","value":{double}}}}}}}"#
        );
        assert_eq!(weights_of(&json_envoy, "canary"), expected);
    }

    #[test]
    fn a_weight_written_with_an_escape_is_not_located() {
        // The JSON string spells the 9 of 90 as \u0039: the decoded config says 90, but the
        // digits are not in the file as such.
        let value = serde_json::to_string(CONFIG)
            .unwrap()
            .replace(r#"\"weight\":90"#, r#"\"weight\":\u00390"#);
        assert!(value.contains("u0039"), "{value}");
        let file = format!(
            r#"{{"@type":"{DYNAMIC_MODULE}","filter_config":{{"@type":"google.protobuf.StringValue","value":{value}}}}}"#
        );
        let (format, docs) = parse_file(&file).unwrap();
        let found = discover(&file, format, &docs).found;
        assert_eq!(found.len(), 1, "{file}");
        assert!(matches!(
            locate_split(&file, &found[0], "canary"),
            Err(SplitError::Unreadable(_))
        ));
        // The other weight is written plainly.
        let canary = locate_split(&file, &found[0], "default");
        assert!(matches!(canary, Err(SplitError::NotASplit { .. })));
    }

    #[test]
    fn plain_yaml_scalars_follow_the_core_schema() {
        for (text, json) in [
            ("90", "90"),
            ("-3", "-3"),
            ("0x10", "16"),
            ("1.5", "1.5"),
            ("true", "true"),
            ("~", "null"),
            ("", "null"),
            ("v1", "\"v1\""),
            ("1.2.3", "\"1.2.3\""),
        ] {
            assert_eq!(plain_yaml_scalar(text).to_string(), json, "{text}");
        }
    }
}
