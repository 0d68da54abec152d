//! Where each field of a YAML document is written: a map from field paths (`spec.stage`,
//! `spec.consistency.rules[2].field`, the notation of schema violations) to line numbers, so a
//! finding points at the offending field rather than at the start of its document.
//!
//! This is a scanner of the YAML people write for Kubernetes — block mappings and sequences,
//! flow collections (`{ a: 1 }`, `[x, y]`, also across lines), block scalars (`|`, `>`),
//! comments, quoted keys — not a full YAML parser. Whatever it cannot place falls back to the
//! nearest enclosing field that it could, and at worst to the document's first line.

use std::collections::BTreeMap;

/// Lines of the fields of one document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldLines {
    lines: BTreeMap<String, usize>,
}

impl FieldLines {
    /// Scans `text` (one YAML document); lines are numbered from `first_line` (1-based number of
    /// the text's first line in its file).
    pub fn scan(text: &str, first_line: usize) -> Self {
        let lines: Vec<&str> = text.lines().collect();
        let mut scanner = Scanner {
            lines: &lines,
            found: BTreeMap::new(),
        };
        scanner.block();
        FieldLines {
            lines: scanner
                .found
                .into_iter()
                .map(|(path, line)| (path, line + first_line))
                .collect(),
        }
    }

    /// The line of `field`, or of its nearest enclosing field that was found.
    pub fn line_of(&self, field: &str) -> Option<usize> {
        let mut path = field;
        loop {
            if let Some(&line) = self.lines.get(path) {
                return Some(line);
            }
            path = parent(path)?;
        }
    }

    /// Whether no field was found.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// `a.b[2]` → `a.b`, `a.b` → `a`, `a` → none.
fn parent(path: &str) -> Option<&str> {
    if path.ends_with(']') {
        return path.rfind('[').map(|i| &path[..i]);
    }
    path.rfind('.').map(|i| &path[..i])
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

struct Frame {
    path: String,
    /// Column where this container's entries start.
    indent: usize,
    seq: bool,
    count: usize,
}

struct Scanner<'a> {
    lines: &'a [&'a str],
    /// Path → 0-based line index.
    found: BTreeMap<String, usize>,
}

impl Scanner<'_> {
    fn record(&mut self, path: &str, line: usize) {
        self.found.entry(path.to_string()).or_insert(line);
    }

    /// The block structure, line by line.
    fn block(&mut self) {
        let mut stack: Vec<Frame> = Vec::new();
        // A key whose value starts on a later line: (its path, its column).
        let mut pending: Option<(String, usize)> = None;
        // Inside a block scalar: lines indented deeper than this column belong to it.
        let mut scalar_above: Option<usize> = None;
        let mut index = 0;
        while index < self.lines.len() {
            let line = self.lines[index];
            let content = line.trim_start_matches(' ');
            let indent = line.len() - content.len();
            if content.trim().is_empty() || content.starts_with('#') {
                index += 1;
                continue;
            }
            if let Some(column) = scalar_above {
                if indent > column {
                    index += 1;
                    continue;
                }
                scalar_above = None;
            }
            let is_item = content == "-" || content.starts_with("- ");
            if stack.is_empty() {
                stack.push(Frame {
                    path: String::new(),
                    indent,
                    seq: is_item,
                    count: 0,
                });
            }
            if let Some((path, column)) = pending.take()
                && (indent > column || (indent == column && is_item))
            {
                stack.push(Frame {
                    path,
                    indent,
                    seq: is_item,
                    count: 0,
                });
            }
            while let Some(top) = stack.last() {
                let closes = indent < top.indent || (indent == top.indent && top.seq && !is_item);
                if closes && stack.len() > 1 {
                    stack.pop();
                } else {
                    break;
                }
            }
            let top = stack.last_mut().expect("the root frame stays");
            if indent != top.indent {
                // The continuation of a multi-line plain scalar.
                index += 1;
                continue;
            }
            let next = if top.seq && is_item {
                let path = format!("{}[{}]", top.path, top.count);
                top.count += 1;
                self.record(&path, index);
                let rest = &content[1..];
                let rest_content = rest.trim_start_matches(' ');
                let column = indent + 1 + (rest.len() - rest_content.len());
                if rest_content.is_empty() || rest_content.starts_with('#') {
                    pending = Some((path, indent));
                    None
                } else if key_of(rest_content).is_some() {
                    stack.push(Frame {
                        path: path.clone(),
                        indent: column,
                        seq: false,
                        count: 0,
                    });
                    self.entry(
                        &path,
                        rest_content,
                        index,
                        column,
                        &mut pending,
                        &mut scalar_above,
                    )
                } else if rest_content.starts_with('|') || rest_content.starts_with('>') {
                    scalar_above = Some(indent);
                    None
                } else {
                    self.value(&path, rest_content, index, column)
                }
            } else if !top.seq && (content.starts_with('{') || content.starts_with('[')) {
                // A document written as JSON (or a flow collection at the root).
                let path = top.path.clone();
                self.value(&path, content, index, indent)
            } else if !top.seq {
                let path = top.path.clone();
                self.entry(
                    &path,
                    content,
                    index,
                    indent,
                    &mut pending,
                    &mut scalar_above,
                )
            } else {
                None
            };
            index = next.unwrap_or(index) + 1;
        }
    }

    /// A `key: value` entry of a block mapping at `column` of line `index`. Returns the last line
    /// the value uses when it spans lines (a flow collection).
    fn entry(
        &mut self,
        map: &str,
        content: &str,
        index: usize,
        column: usize,
        pending: &mut Option<(String, usize)>,
        scalar_above: &mut Option<usize>,
    ) -> Option<usize> {
        let (key, after) = key_of(content)?;
        let path = child(map, &key);
        self.record(&path, index);
        let value = content[after..].trim_start_matches(' ');
        let value_column = column + (content.len() - value.len());
        let bare = strip_comment(value).trim();
        if bare.is_empty() || is_node_property(bare) {
            *pending = Some((path, column));
            return None;
        }
        if bare.starts_with('|') || bare.starts_with('>') {
            *scalar_above = Some(column);
            return None;
        }
        self.value(&path, value, index, value_column)
    }

    /// A value starting at `column` of line `index`: flow collections are scanned. Returns the
    /// line a flow value ends on.
    fn value(&mut self, path: &str, value: &str, index: usize, column: usize) -> Option<usize> {
        let bare = strip_comment(value).trim();
        if !(bare.starts_with('{') || bare.starts_with('[')) {
            return None;
        }
        let mut cursor = Cursor {
            lines: self.lines,
            line: index,
            column,
        };
        self.flow(path, &mut cursor);
        Some(cursor.line.min(self.lines.len().saturating_sub(1)))
    }

    /// A flow value at the cursor.
    fn flow(&mut self, path: &str, cursor: &mut Cursor) {
        cursor.skip_space();
        match cursor.peek() {
            Some('{') => {
                cursor.bump();
                loop {
                    cursor.skip_space();
                    match cursor.peek() {
                        None => return,
                        Some('}') => {
                            cursor.bump();
                            return;
                        }
                        Some(',') => {
                            cursor.bump();
                            continue;
                        }
                        _ => {}
                    }
                    let line = cursor.line;
                    let key = cursor.scalar(true);
                    let key_path = child(path, &key);
                    self.record(&key_path, line);
                    cursor.skip_space();
                    if cursor.peek() == Some(':') {
                        cursor.bump();
                        cursor.skip_space();
                        if !matches!(cursor.peek(), Some(',' | '}') | None) {
                            self.flow(&key_path, cursor);
                        }
                    }
                }
            }
            Some('[') => {
                cursor.bump();
                let mut count = 0;
                loop {
                    cursor.skip_space();
                    match cursor.peek() {
                        None => return,
                        Some(']') => {
                            cursor.bump();
                            return;
                        }
                        Some(',') => {
                            cursor.bump();
                            continue;
                        }
                        _ => {}
                    }
                    let item = format!("{path}[{count}]");
                    count += 1;
                    self.record(&item, cursor.line);
                    self.flow(&item, cursor);
                }
            }
            Some(_) => {
                cursor.scalar(false);
            }
            None => {}
        }
    }
}

/// Reads flow text across lines.
struct Cursor<'a> {
    lines: &'a [&'a str],
    line: usize,
    column: usize,
}

impl Cursor<'_> {
    fn rest(&self) -> &str {
        self.lines
            .get(self.line)
            .map_or("", |l| l.get(self.column..).unwrap_or(""))
    }

    fn peek(&self) -> Option<char> {
        let mut line = self.line;
        let mut column = self.column;
        while line < self.lines.len() {
            if let Some(c) = self.lines[line]
                .get(column..)
                .and_then(|r| r.chars().next())
            {
                return Some(c);
            }
            line += 1;
            column = 0;
        }
        None
    }

    fn bump(&mut self) {
        if let Some(c) = self.rest().chars().next() {
            self.column += c.len_utf8();
        }
    }

    /// Skips blanks, comments and line ends.
    fn skip_space(&mut self) {
        while self.line < self.lines.len() {
            let rest = self.rest();
            let trimmed = rest.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                self.line += 1;
                self.column = 0;
                continue;
            }
            self.column += rest.len() - trimmed.len();
            return;
        }
    }

    /// A scalar: quoted, or plain up to a flow indicator (`,`, `]`, `}`, and `:` followed by a
    /// blank when `key`). Returns its text.
    fn scalar(&mut self, key: bool) -> String {
        let rest = self.rest().to_string();
        let mut out = String::new();
        let mut chars = rest.char_indices().peekable();
        if let Some(&(_, quote @ ('"' | '\''))) = chars.peek() {
            chars.next();
            let mut end = rest.len();
            while let Some((i, c)) = chars.next() {
                if c == '\\' && quote == '"' {
                    if let Some((_, escaped)) = chars.next() {
                        out.push(escaped);
                    }
                    continue;
                }
                if c == quote {
                    if quote == '\'' && chars.peek().is_some_and(|&(_, n)| n == '\'') {
                        chars.next();
                        out.push('\'');
                        continue;
                    }
                    end = i + 1;
                    break;
                }
                out.push(c);
            }
            self.column += end;
            return out;
        }
        let mut end = rest.len();
        while let Some((i, c)) = chars.next() {
            let stop = matches!(c, ',' | ']' | '}')
                || (key
                    && c == ':'
                    && chars
                        .peek()
                        .is_none_or(|&(_, n)| n == ' ' || matches!(n, ',' | '}')))
                || (c == '#' && rest[..i].ends_with(' '));
            if stop {
                end = i;
                break;
            }
        }
        self.column += end;
        rest[..end].trim().to_string()
    }
}

/// `key: value` → the key and the byte offset after the colon. Handles quoted keys.
fn key_of(content: &str) -> Option<(String, usize)> {
    let first = content.chars().next()?;
    if first == '"' || first == '\'' {
        let close = content[1..].find(first)? + 1;
        let after = &content[close + 1..];
        let colon = after.find(':')?;
        if !after[..colon].trim().is_empty() {
            return None;
        }
        let rest = &after[colon + 1..];
        if !(rest.is_empty() || rest.starts_with(' ')) {
            return None;
        }
        return Some((content[1..close].to_string(), close + 1 + colon + 1));
    }
    if matches!(first, '{' | '[' | '#' | '|' | '>' | '&' | '*' | '!' | '%')
        || content.starts_with("- ")
        || content == "-"
    {
        return None;
    }
    let bytes = content.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && i > 0 && bytes[i - 1] == b' ' {
            return None;
        }
        if b == b':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ') {
            let key = content[..i].trim_end();
            if key.is_empty() {
                return None;
            }
            return Some((key.to_string(), i + 1));
        }
    }
    None
}

/// An anchor or tag alone (`&base`, `!!map`): the value follows on later lines.
fn is_node_property(value: &str) -> bool {
    value
        .split_whitespace()
        .all(|w| w.starts_with('&') || w.starts_with('!'))
}

/// The text before a ` #` comment (outside quotes).
fn strip_comment(value: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for (i, c) in value.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && previous == ' ' => return &value[..i],
            None => {}
        }
        previous = c;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> FieldLines {
        FieldLines::scan(text, 1)
    }

    #[test]
    fn block_mappings_and_sequences() {
        let text = "\
# comment
apiVersion: cx.conductor.dev/v1alpha1
kind: Touchpoint
metadata:
  name: web-checkout
  labels:
    team: digital
spec:
  channel: web
  stage: checkout
  signals:
    surveys:
      - metric: csat
        scale: 10
      - metric: nps
    interactions:
      outcomes:
      - completed
      - abandoned
  paused: false
";
        let l = lines(text);
        assert_eq!(l.line_of("apiVersion"), Some(2));
        assert_eq!(l.line_of("metadata.name"), Some(5));
        assert_eq!(l.line_of("metadata.labels.team"), Some(7));
        assert_eq!(l.line_of("spec.stage"), Some(10));
        assert_eq!(l.line_of("spec.signals.surveys[0].metric"), Some(13));
        assert_eq!(l.line_of("spec.signals.surveys[0].scale"), Some(14));
        assert_eq!(l.line_of("spec.signals.surveys[1]"), Some(15));
        assert_eq!(l.line_of("spec.signals.interactions.outcomes[1]"), Some(19));
        assert_eq!(l.line_of("spec.paused"), Some(20));
        // Not written: the nearest enclosing field.
        assert_eq!(l.line_of("spec.collector.replicas"), Some(8));
        assert_eq!(l.line_of("status"), None);
    }

    #[test]
    fn flow_collections_on_one_line_and_across_lines() {
        let text = "\
metadata: { name: web, namespace: shop, labels: { journey: main } }
spec:
  stages: [purchase, support]
  consistency:
    rules:
      - { field: brand.voice, policy: equal }
      - { field: locales, policy: includes,
          values: [it-IT] }
      - field: \"attributes.return: policy\"
        policy: equal
  coverage: {listeningPerStage: true}
";
        let l = lines(text);
        assert_eq!(l.line_of("metadata.labels.journey"), Some(1));
        assert_eq!(l.line_of("spec.stages[1]"), Some(3));
        assert_eq!(l.line_of("spec.consistency.rules[0].policy"), Some(6));
        assert_eq!(l.line_of("spec.consistency.rules[1].policy"), Some(7));
        assert_eq!(l.line_of("spec.consistency.rules[1].values[0]"), Some(8));
        assert_eq!(l.line_of("spec.consistency.rules[2].field"), Some(9));
        assert_eq!(l.line_of("spec.consistency.rules[2].policy"), Some(10));
        assert_eq!(l.line_of("spec.coverage.listeningPerStage"), Some(11));
    }

    #[test]
    fn block_scalars_quotes_comments_and_offsets() {
        let text = "\
spec:
  indicator:
    promql: |
      sum(rate(x[5m]))
      key: not a field
  'window': 7d   # a comment: with colon
  owner: \"care\" # owner
  attributes:
    loyalty.tier: gold
";
        let l = FieldLines::scan(text, 10);
        assert_eq!(l.line_of("spec.indicator.promql"), Some(12));
        assert_eq!(l.line_of("spec.indicator.promql.key"), Some(12));
        assert_eq!(l.line_of("spec.window"), Some(15));
        assert_eq!(l.line_of("spec.owner"), Some(16));
        assert_eq!(l.line_of("spec.attributes.loyalty.tier"), Some(18));
    }

    #[test]
    fn json_documents() {
        let text = "{\"kind\": \"Channel\",\n \"spec\": {\"type\": \"web\",\n   \"locales\": [\"it-IT\", \"en\"]}}";
        let l = lines(text);
        assert_eq!(l.line_of("kind"), Some(1));
        assert_eq!(l.line_of("spec.type"), Some(2));
        assert_eq!(l.line_of("spec.locales[1]"), Some(3));
    }
}
