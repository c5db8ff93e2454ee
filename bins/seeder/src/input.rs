//! Reading the rows to load: a CSV file, a JSON array, or a generated range. Every row that
//! breaks a rule is reported with its line number, field and reason, and nothing of it is kept.

use std::collections::HashMap;
use std::fmt;

use domain::{AgentName, Department, ExtensionNumber, FieldError, JsonObject, NewExtension, Rule};
use serde_json::Value;

/// The most rows a `--range` may generate at once.
pub const MAX_RANGE: u64 = 100_000;

/// One valid input row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The line it starts on (1-based; for a range, its position in the range).
    pub line: usize,
    /// The extension number.
    pub extension: ExtensionNumber,
    /// The agent's name.
    pub agent_name: AgentName,
    /// The department.
    pub department: Department,
    /// Whether it is in service, when the input says so. An existing record keeps its flag when
    /// the input is silent; a new one is active.
    pub is_active: Option<bool>,
}

impl Row {
    /// The creation request for this row.
    pub fn to_new(&self) -> NewExtension {
        NewExtension {
            extension: self.extension.clone(),
            agent_name: self.agent_name.clone(),
            department: self.department.clone(),
            is_active: self.is_active.unwrap_or(true),
        }
    }
}

/// Why a row was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The line the row starts on.
    pub line: usize,
    /// For JSON input, the row's position in the array (1-based): several elements can
    /// start on one line when the array is written on a single line.
    pub element: Option<usize>,
    /// The field at fault, when one is.
    pub field: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl Rejection {
    fn row(line: usize, reason: impl Into<String>) -> Self {
        Self {
            line,
            element: None,
            field: None,
            reason: reason.into(),
        }
    }

    fn field(line: usize, e: &FieldError) -> Self {
        Self {
            line,
            element: None,
            field: Some(e.field.clone()),
            reason: e.rule.to_string(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(element) = self.element {
            write!(f, " (element {element})")?;
        }
        match &self.field {
            Some(field) => write!(f, ": {field}: {}", self.reason),
            None => write!(f, ": {}", self.reason),
        }
    }
}

/// What an input yielded: the valid rows and the refused ones, each in input order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Rows to load.
    pub rows: Vec<Row>,
    /// Problems, one per field at fault (a row may have several).
    pub rejected: Vec<Rejection>,
}

impl Parsed {
    /// How many rows were refused (a row with three bad fields counts once).
    pub fn rejected_rows(&self) -> usize {
        let mut rows: Vec<(usize, Option<usize>)> =
            self.rejected.iter().map(|r| (r.line, r.element)).collect();
        rows.dedup();
        rows.len()
    }

    /// Adds a row, refusing an extension number that an earlier row already has.
    fn push(&mut self, row: Row, seen: &mut HashMap<ExtensionNumber, usize>) {
        match seen.get(&row.extension) {
            Some(first) => self.rejected.push(Rejection {
                line: row.line,
                element: None,
                field: Some("extension".into()),
                reason: format!("{} already appears on line {first}", row.extension),
            }),
            None => {
                seen.insert(row.extension.clone(), row.line);
                self.rows.push(row);
            }
        }
    }
}

/// A problem with the input as a whole (not with one row).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    /// The CSV header is unusable.
    #[error("CSV header: {0}")]
    Header(String),
    /// The CSV rows cannot be told apart (an unclosed quote).
    #[error("CSV: {0}")]
    Csv(String),
    /// The JSON is not an array of objects, or not JSON at all.
    #[error("JSON: {0}")]
    Json(String),
    /// The range is malformed or too large.
    #[error("--range: {0}")]
    Range(String),
}

/// The columns a CSV file may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    Extension,
    AgentName,
    Department,
    IsActive,
}

impl Column {
    /// Reads a header cell: case, surrounding blanks, and spaces or dashes instead of the
    /// underscore do not matter (`Agent Name` is `agent_name`).
    fn parse(cell: &str) -> Option<Self> {
        let norm: String = cell
            .trim()
            .chars()
            .map(|c| match c {
                ' ' | '-' => '_',
                c => c.to_ascii_lowercase(),
            })
            .collect();
        match norm.as_str() {
            "extension" => Some(Self::Extension),
            "agent_name" => Some(Self::AgentName),
            "department" => Some(Self::Department),
            "is_active" => Some(Self::IsActive),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Extension => "extension",
            Self::AgentName => "agent_name",
            Self::Department => "department",
            Self::IsActive => "is_active",
        }
    }
}

/// Reads a yes/no cell. Empty means "not said".
pub fn parse_flag(raw: &str) -> Result<Option<bool>, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "true" | "yes" | "y" | "1" | "active" => Ok(Some(true)),
        "false" | "no" | "n" | "0" | "inactive" => Ok(Some(false)),
        _ => Err(format!(
            "must be true or false (or yes/no, 1/0), got {raw:?}"
        )),
    }
}

/// Parses CSV with the header `extension,agent_name,department[,is_active]` (any column
/// order). A UTF-8 byte order mark is ignored; cells are trimmed; quoting follows RFC 4180.
pub fn parse_csv(bytes: &[u8]) -> Result<Parsed, InputError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let quoting = check_quotes(bytes)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header = reader
        .byte_headers()
        .map_err(|e| InputError::Header(e.to_string()))?
        .clone();
    if header.is_empty() {
        return Err(InputError::Header(
            "the file is empty; expected extension,agent_name,department[,is_active]".into(),
        ));
    }
    let mut columns = Vec::with_capacity(header.len());
    for cell in &header {
        let text = String::from_utf8_lossy(cell);
        let column = Column::parse(&text).ok_or_else(|| {
            InputError::Header(format!(
                "unknown column {text:?}; expected extension, agent_name, department and \
                 optionally is_active"
            ))
        })?;
        if columns.contains(&column) {
            return Err(InputError::Header(format!(
                "column {} appears twice",
                column.name()
            )));
        }
        columns.push(column);
    }
    for required in [Column::Extension, Column::AgentName, Column::Department] {
        if !columns.contains(&required) {
            return Err(InputError::Header(format!(
                "column {} is missing; expected extension,agent_name,department[,is_active]",
                required.name()
            )));
        }
    }

    let misquoted: std::collections::HashSet<usize> = quoting.iter().map(|r| r.line).collect();
    let mut parsed = Parsed {
        rows: Vec::new(),
        rejected: quoting,
    };
    let mut seen = HashMap::new();
    let mut record = csv::ByteRecord::new();
    let mut lines = LineCounter::new(bytes);
    loop {
        let offset = reader.position().byte();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let offset = e.position().map_or(offset, csv::Position::byte);
                parsed
                    .rejected
                    .push(Rejection::row(lines.line_at(offset), e.to_string()));
                continue;
            }
        }
        let line = lines.line_at(record.position().map_or(offset, csv::Position::byte));
        if misquoted.contains(&line) {
            continue;
        }
        if record.len() != columns.len() {
            // A missing or extra cell shifts the ones after it: which value belongs to which
            // column cannot be known, so the row is refused whole.
            parsed.rejected.push(Rejection::row(
                line,
                format!(
                    "expected {} cells, as the header has, got {}",
                    columns.len(),
                    record.len()
                ),
            ));
            continue;
        }
        let mut cells: [Option<String>; 4] = Default::default();
        let mut bad_utf8 = false;
        for (column, raw) in columns.iter().zip(record.iter()) {
            match std::str::from_utf8(raw) {
                Ok(text) => cells[*column as usize] = Some(text.to_owned()),
                Err(_) => {
                    parsed.rejected.push(Rejection {
                        line,
                        element: None,
                        field: Some(column.name().into()),
                        reason: "is not valid UTF-8".into(),
                    });
                    bad_utf8 = true;
                }
            }
        }
        if bad_utf8 {
            continue;
        }
        let [extension, agent_name, department, is_active] = cells;
        let before = parsed.rejected.len();
        let rejected = &mut parsed.rejected;
        let extension = required(rejected, line, extension, "extension")
            .and_then(|s| check(rejected, line, ExtensionNumber::parse(&s)));
        let agent_name = required(rejected, line, agent_name, "agent_name")
            .and_then(|s| check(rejected, line, AgentName::parse(&s)));
        let department = required(rejected, line, department, "department")
            .and_then(|s| check(rejected, line, Department::parse(&s)));
        let is_active = match parse_flag(is_active.as_deref().unwrap_or("")) {
            Ok(flag) => flag,
            Err(reason) => {
                parsed.rejected.push(Rejection {
                    line,
                    element: None,
                    field: Some("is_active".into()),
                    reason,
                });
                None
            }
        };
        if parsed.rejected.len() > before {
            continue;
        }
        if let (Some(extension), Some(agent_name), Some(department)) =
            (extension, agent_name, department)
        {
            parsed.push(
                Row {
                    line,
                    extension,
                    agent_name,
                    department,
                    is_active,
                },
                &mut seen,
            );
        }
    }
    // Quoting problems were found first; each belongs with the other problems of its row.
    parsed.rejected.sort_by_key(|r| r.line);
    Ok(parsed)
}

/// Finds what the csv crate reads without complaint but a person did not mean, reading the
/// bytes the way it does (RFC 4180; a quote opens a quoted field only as a field's first
/// byte): a quoted field that is never closed, which would swallow every row after it into
/// one cell and is an error for the whole file, and text after the closing quote of a field
/// (`"Smith" Jr`, from a quote that should have been doubled), which refuses its row.
fn check_quotes(bytes: &[u8]) -> Result<Vec<Rejection>, InputError> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        AfterQuote,
        AfterQuoteBlank,
    }
    let mut state = State::FieldStart;
    let mut line = 1;
    let mut row_line = 1;
    let mut row_start = true;
    let mut opened = 1;
    let mut rejected: Vec<Rejection> = Vec::new();
    for &b in bytes {
        let terminator = b == b'\n' || b == b'\r';
        if row_start && !terminator {
            row_line = line;
            row_start = false;
        }
        state = match (state, b) {
            (State::Quoted, b'"') => State::AfterQuote,
            (State::Quoted, _) => State::Quoted,
            (State::FieldStart, b'"') | (State::AfterQuote, b'"') => {
                if state == State::FieldStart {
                    opened = line;
                }
                State::Quoted
            }
            (_, b',') => State::FieldStart,
            (_, b'\n' | b'\r') => {
                row_start = true;
                State::FieldStart
            }
            (State::AfterQuote | State::AfterQuoteBlank, b' ' | b'\t') => State::AfterQuoteBlank,
            (State::AfterQuote | State::AfterQuoteBlank, _) => {
                if rejected.last().is_none_or(|r| r.line != row_line) {
                    rejected.push(Rejection::row(
                        row_line,
                        "text after the closing quote of a field (write a quote inside a \
                         quoted field twice: \"\")",
                    ));
                }
                State::Unquoted
            }
            (State::FieldStart | State::Unquoted, _) => State::Unquoted,
        };
        if b == b'\n' {
            line += 1;
        }
    }
    if state == State::Quoted {
        return Err(InputError::Csv(format!(
            "line {opened}: a quoted field opened on this line is never closed (a `\"` is \
             missing), so every row after it would be read into that field"
        )));
    }
    Ok(rejected)
}

/// A cell that must be present and not empty.
fn required(
    rejected: &mut Vec<Rejection>,
    line: usize,
    raw: Option<String>,
    name: &str,
) -> Option<String> {
    let value = raw.filter(|s| !s.is_empty());
    if value.is_none() {
        rejected.push(Rejection::field(
            line,
            &FieldError::new(name, Rule::Required),
        ));
    }
    value
}

fn check<T>(
    rejected: &mut Vec<Rejection>,
    line: usize,
    result: Result<T, FieldError>,
) -> Option<T> {
    result
        .map_err(|e| rejected.push(Rejection::field(line, &e)))
        .ok()
}

/// Turns byte offsets into line numbers, counting forward only, once over the file. (The csv
/// crate's own line count goes wrong after blank lines and CR LF endings.)
struct LineCounter<'a> {
    bytes: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            offset: 0,
            line: 1,
        }
    }

    /// The line of the first byte at or after `offset` that is not a line break (blank lines
    /// before a row belong to no row).
    fn line_at(&mut self, offset: u64) -> usize {
        let mut target = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        while self
            .bytes
            .get(target)
            .is_some_and(|b| *b == b'\n' || *b == b'\r')
        {
            target += 1;
        }
        if target >= self.offset {
            self.line += self.bytes[self.offset..target]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            self.offset = target;
        }
        self.line
    }
}

/// Parses a JSON array of objects with the members of a creation request (`extension`,
/// `agent_name`, `department`, optional `is_active`). Each element is reported under the line
/// it starts on. Members a creation request may not carry (status fields, ids, anything
/// unknown) refuse the element and are named.
pub fn parse_json(text: &str) -> Result<Parsed, InputError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parsed = Parsed::default();
    let mut seen = HashMap::new();
    for (index, element) in json_elements(text)?.into_iter().enumerate() {
        let (line, value) = element?;
        let before = parsed.rejected.len();
        parse_json_element(&mut parsed, &mut seen, line, value);
        for r in &mut parsed.rejected[before..] {
            r.element = Some(index + 1);
        }
    }
    Ok(parsed)
}

/// Reads one element of a JSON array into `parsed`. A member given more than once is refused
/// by name: which of its values was meant cannot be known.
fn parse_json_element(
    parsed: &mut Parsed,
    seen: &mut HashMap<ExtensionNumber, usize>,
    line: usize,
    element: JsonObject,
) {
    let map = match element {
        JsonObject::Other(kind) => {
            parsed.rejected.push(Rejection::row(
                line,
                format!("expected an object, got {kind}"),
            ));
            return;
        }
        JsonObject::Object { duplicates, .. } if !duplicates.is_empty() => {
            parsed
                .rejected
                .extend(duplicates.into_iter().map(|name| Rejection {
                    line,
                    element: None,
                    field: Some(name),
                    reason: "is given more than once in this object".into(),
                }));
            return;
        }
        JsonObject::Object { map, .. } => map,
    };
    match NewExtension::from_json(&map) {
        Ok(new) => {
            let is_active = map.get("is_active").and_then(Value::as_bool);
            parsed.push(
                Row {
                    line,
                    extension: new.extension,
                    agent_name: new.agent_name,
                    department: new.department,
                    is_active,
                },
                seen,
            );
        }
        Err(errors) => parsed
            .rejected
            .extend(errors.0.iter().map(|e| Rejection::field(line, e))),
    }
}

type Element = Result<(usize, JsonObject), InputError>;

/// Splits a top-level JSON array into its elements, each with the line it starts on.
fn json_elements(text: &str) -> Result<Vec<Element>, InputError> {
    let bytes = text.as_bytes();
    let mut lines = LineCounter::new(bytes);
    let skip_ws = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let offset = |i: usize| u64::try_from(i).unwrap_or(u64::MAX);
    let mut i = skip_ws(0);
    if bytes.get(i) != Some(&b'[') {
        return Err(InputError::Json(format!(
            "line {}: expected an array of objects (`[ {{...}}, ... ]`)",
            lines.line_at(offset(i))
        )));
    }
    i = skip_ws(i + 1);
    let mut out = Vec::new();
    if bytes.get(i) == Some(&b']') {
        i = skip_ws(i + 1);
    } else {
        loop {
            let line = lines.line_at(offset(i));
            let mut stream =
                serde_json::Deserializer::from_str(&text[i..]).into_iter::<JsonObject>();
            match stream.next() {
                Some(Ok(value)) => out.push(Ok((line, value))),
                Some(Err(e)) => {
                    // serde_json counts lines from the start of the element; report the line
                    // in the file instead.
                    let msg = e.to_string();
                    let msg = msg
                        .rsplit_once(" at line ")
                        .map_or(msg.as_str(), |(m, _)| m);
                    return Err(InputError::Json(format!(
                        "line {}: {msg}",
                        line + e.line().saturating_sub(1)
                    )));
                }
                None => {
                    return Err(InputError::Json(format!(
                        "line {line}: the array is not closed"
                    )));
                }
            }
            i = skip_ws(i + stream.byte_offset());
            match bytes.get(i) {
                Some(b',') => i = skip_ws(i + 1),
                Some(b']') => {
                    i = skip_ws(i + 1);
                    break;
                }
                _ => {
                    return Err(InputError::Json(format!(
                        "line {}: expected `,` or `]` after an element",
                        lines.line_at(offset(i))
                    )));
                }
            }
        }
    }
    if i < text.len() {
        return Err(InputError::Json(format!(
            "line {}: unexpected text after the array",
            lines.line_at(offset(i))
        )));
    }
    Ok(out)
}

/// Generates rows for a range like `1001-1050`, named `Agent 1001`, ... in one department.
/// When both ends have the same number of digits the width is kept, so `0100-0199` makes
/// `0100`, `0101`, ...; otherwise a leading zero would be ambiguous and is refused.
pub fn parse_range(spec: &str, department: &Department) -> Result<Vec<Row>, InputError> {
    let err = |m: String| InputError::Range(m);
    let (a, b) = spec
        .trim()
        .split_once('-')
        .ok_or_else(|| err(format!("{spec:?} must look like 1001-1050")))?;
    let (a, b) = (a.trim(), b.trim());
    for end in [a, b] {
        ExtensionNumber::parse(end).map_err(|e| err(format!("{end:?}: {e}")))?;
    }
    let same_width = a.len() == b.len();
    if !same_width && (a.starts_with('0') || b.starts_with('0')) {
        return Err(err(format!(
            "{a} and {b} have different widths and a leading zero; write both ends with the \
             same number of digits"
        )));
    }
    // Both ends are 2 to 10 digits, so they fit a u64.
    let parse = |s: &str| s.parse::<u64>().map_err(|e| err(format!("{s:?}: {e}")));
    let (start, end) = (parse(a)?, parse(b)?);
    if start > end {
        return Err(err(format!(
            "the start {a} is after the end {b}; write the smaller number first"
        )));
    }
    let count = end - start + 1;
    if count > MAX_RANGE {
        return Err(err(format!(
            "{a}-{b} would create {count} extensions; at most {MAX_RANGE} at once"
        )));
    }
    let width = if same_width { a.len() } else { 0 };
    (start..=end)
        .enumerate()
        .map(|(i, n)| {
            let text = format!("{n:0width$}");
            let extension =
                ExtensionNumber::parse(&text).map_err(|e| err(format!("{text}: {e}")))?;
            let agent_name = AgentName::parse(&format!("Agent {text}"))
                .map_err(|e| err(format!("{text}: {e}")))?;
            Ok(Row {
                line: i + 1,
                extension,
                agent_name,
                department: department.clone(),
                is_active: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (line, extension, name, department, is_active) of each valid row, and each rejection
    /// as text.
    type Summary = (
        Vec<(usize, String, String, String, Option<bool>)>,
        Vec<String>,
    );

    fn summary(p: &Parsed) -> Summary {
        (
            p.rows
                .iter()
                .map(|r| {
                    (
                        r.line,
                        r.extension.to_string(),
                        r.agent_name.to_string(),
                        r.department.to_string(),
                        r.is_active,
                    )
                })
                .collect(),
            p.rejected.iter().map(ToString::to_string).collect(),
        )
    }

    fn row(
        line: usize,
        e: &str,
        n: &str,
        d: &str,
        a: Option<bool>,
    ) -> (usize, String, String, String, Option<bool>) {
        (line, e.into(), n.into(), d.into(), a)
    }

    #[test]
    fn csv_header_variants() {
        let rows = [
            "extension,agent_name,department\n1001,Alice,Sales\n",
            "\u{feff}extension,agent_name,department\n1001,Alice,Sales\n",
            "Extension, Agent Name ,DEPARTMENT\r\n1001 , Alice , Sales\r\n",
            "department,extension,agent-name\nSales,1001,Alice\n",
            "extension,agent_name,department,is_active\n1001,Alice,Sales,\n",
        ];
        for text in rows {
            let p = parse_csv(text.as_bytes()).expect(text);
            assert_eq!(
                summary(&p),
                (vec![row(2, "1001", "Alice", "Sales", None)], vec![]),
                "{text:?}"
            );
        }
        let bad = [
            (
                "",
                "CSV header: the file is empty; expected extension,agent_name,department[,is_active]",
            ),
            (
                "extension,name,department\n",
                "CSV header: unknown column \"name\"; expected extension, agent_name, department and optionally is_active",
            ),
            (
                "extension,agent_name\n",
                "CSV header: column department is missing; expected extension,agent_name,department[,is_active]",
            ),
            (
                "extension,agent_name,department,Extension\n",
                "CSV header: column extension appears twice",
            ),
        ];
        for (text, want) in bad {
            assert_eq!(
                parse_csv(text.as_bytes()).expect_err(text).to_string(),
                want
            );
        }
    }

    #[test]
    fn csv_rows_quoting_and_rejections() {
        let text = "extension,agent_name,department,is_active\n\
                    1001,\"Smith, Alice\",Sales,yes\n\
                    1002,\"Bob \"\"The Builder\"\"\",Support,0\n\
                    \n\
                    12a4,Carol,Sales,true\n\
                    1005,,Sales\n\
                    1006,Dan,Sales,maybe\n\
                    1007,Eve,Sales,true,extra\n\
                    1001,Again,Sales,true\n\
                    1008,\"Multi\nLine\",Sales,1\n\
                    1009,Fay,Ops,FALSE\n";
        let p = parse_csv(text.as_bytes()).expect("parsed");
        let (rows, rejected) = summary(&p);
        assert_eq!(
            rows,
            vec![
                row(2, "1001", "Smith, Alice", "Sales", Some(true)),
                row(3, "1002", "Bob \"The Builder\"", "Support", Some(false)),
                row(12, "1009", "Fay", "Ops", Some(false)),
            ]
        );
        assert_eq!(
            rejected,
            vec![
                "line 5: extension: must contain only the digits 0-9",
                "line 6: expected 4 cells, as the header has, got 3",
                "line 7: is_active: must be true or false (or yes/no, 1/0), got \"maybe\"",
                "line 8: expected 4 cells, as the header has, got 5",
                "line 9: extension: 1001 already appears on line 2",
                "line 10: agent_name: must not contain control characters",
            ]
        );
        assert_eq!(p.rejected_rows(), 6);
    }

    #[test]
    fn csv_rows_with_too_few_or_too_many_cells_are_refused_naming_both_counts() {
        let text = "extension,agent_name,department\n\
                    1001,Alice\n\
                    1002,Bob,Sales,true\n\
                    1003\n\
                    1004,Dan,Sales\n";
        let p = parse_csv(text.as_bytes()).expect("parsed");
        let (rows, rejected) = summary(&p);
        assert_eq!(rows, vec![row(5, "1004", "Dan", "Sales", None)]);
        assert_eq!(
            rejected,
            vec![
                "line 2: expected 3 cells, as the header has, got 2",
                "line 3: expected 3 cells, as the header has, got 4",
                "line 4: expected 3 cells, as the header has, got 1",
            ]
        );
    }

    #[test]
    fn csv_quotes_that_are_never_closed_or_followed_by_text_are_refused() {
        let unclosed = [
            (
                "extension,agent_name,department\n1001,\"Alice,Sales\n1002,Bob,Sales\n",
                2,
            ),
            (
                "extension,agent_name,department\r\n1001,Alice,Sales\r\n\r\n1002,Bob,\"Sales",
                4,
            ),
            // A doubled quote inside stays inside; the field is still open at the end.
            ("extension,agent_name,department\n1001,\"A \"\"B\",\"S\n", 2),
            ("\"extension,agent_name,department\n", 1),
        ];
        for (text, line) in unclosed {
            assert_eq!(
                parse_csv(text.as_bytes()).expect_err(text).to_string(),
                format!(
                    "CSV: line {line}: a quoted field opened on this line is never closed (a \
                     `\"` is missing), so every row after it would be read into that field"
                ),
                "{text:?}"
            );
        }
        let text = "extension,agent_name,department\n\
                    1001,\"Smith\" Jr,Sales\n\
                    1002,\"Bob\"  ,\"Sales\"\t\n\
                    1003,\"Multi\nline\"x,Sales\n\
                    1004,Carol \"C\",Sales\n";
        let p = parse_csv(text.as_bytes()).expect("parsed");
        let (rows, rejected) = summary(&p);
        // Blanks after a closing quote are fine, and a quote inside an unquoted cell is text.
        assert_eq!(
            rows,
            vec![
                row(3, "1002", "Bob", "Sales", None),
                row(6, "1004", "Carol \"C\"", "Sales", None),
            ]
        );
        let after = "text after the closing quote of a field (write a quote inside a quoted \
                     field twice: \"\")";
        assert_eq!(
            rejected,
            vec![format!("line 2: {after}"), format!("line 4: {after}")]
        );
        assert_eq!(p.rejected_rows(), 2);
    }

    #[test]
    fn csv_reports_every_bad_field_of_a_row_and_bad_utf8() {
        let p = parse_csv(b"extension,agent_name,department\n1,,\n1002,\xff\xfe,Sales\n")
            .expect("parsed");
        let (rows, rejected) = summary(&p);
        assert!(rows.is_empty());
        assert_eq!(
            rejected,
            vec![
                "line 2: extension: must be at least 2 characters, got 1",
                "line 2: agent_name: is required and may not be blank",
                "line 2: department: is required and may not be blank",
                "line 3: agent_name: is not valid UTF-8",
            ]
        );
        assert_eq!(p.rejected_rows(), 2);
    }

    #[test]
    fn flags() {
        for (raw, want) in [
            ("true", Ok(Some(true))),
            ("YES", Ok(Some(true))),
            ("1", Ok(Some(true))),
            (" n ", Ok(Some(false))),
            ("False", Ok(Some(false))),
            ("", Ok(None)),
        ] {
            assert_eq!(parse_flag(raw), want, "{raw}");
        }
        assert!(parse_flag("2").is_err());
    }

    #[test]
    fn json_arrays() {
        let text = r#"[
  {"extension": "1001", "agent_name": "Alice", "department": "Sales"},
  {"extension": "1002", "agent_name": "Bob", "department": "Sales", "is_active": false},
  {
    "extension": {"$ne": null},
    "agent_name": "Mallory",
    "department": "Sales",
    "status": "online"
  },
  "1003",
  {"extension": "1004", "agent_name": "{\"$gt\": \"\"}", "department": "$where"},
  {"extension": "1001", "agent_name": "Dup", "department": "Sales"}
]"#;
        let p = parse_json(text).expect("parsed");
        let (rows, rejected) = summary(&p);
        assert_eq!(
            rows,
            vec![
                row(2, "1001", "Alice", "Sales", None),
                row(3, "1002", "Bob", "Sales", Some(false)),
                row(11, "1004", "{\"$gt\": \"\"}", "$where", None),
            ]
        );
        assert_eq!(
            rejected,
            vec![
                "line 4 (element 3): status: is set by the server and cannot be written",
                "line 4 (element 3): extension: must be a string",
                "line 10 (element 4): expected an object, got a string",
                "line 12 (element 6): extension: 1001 already appears on line 2",
            ]
        );
        assert_eq!(p.rejected_rows(), 3);
        assert_eq!(parse_json(" [ ] ").expect("empty"), Parsed::default());
    }

    #[test]
    fn json_members_given_twice_are_refused_naming_the_member_and_the_element() {
        let text = r#"[
  {"extension": "1001", "agent_name": "A", "department": "S"},
  {"extension": "1002", "agent_name": "B", "department": "S", "extension": "1003"},
  {"agent_name": "C", "agent_name": "D", "extension": "1004",
   "department": "S", "department": "T", "agent_name": "E"},
  {"extension": "1005", "agent_name": "F", "department": "S", "is_active": true, "is_active": false}
]"#;
        let p = parse_json(text).expect("parsed");
        let (rows, rejected) = summary(&p);
        assert_eq!(rows, vec![row(2, "1001", "A", "S", None)]);
        let twice = "is given more than once in this object";
        assert_eq!(
            rejected,
            vec![
                format!("line 3 (element 2): extension: {twice}"),
                format!("line 4 (element 3): agent_name: {twice}"),
                format!("line 4 (element 3): department: {twice}"),
                format!("line 6 (element 4): is_active: {twice}"),
            ]
        );
        assert_eq!(p.rejected_rows(), 3);
    }

    #[test]
    fn a_json_array_on_one_line_counts_and_names_each_element() {
        let text = r#"[{"extension":"1"},{"extension":"1002","agent_name":"B","department":"S"},7,{"extension":"x","agent_name":"C","department":"S"}]"#;
        let p = parse_json(text).expect("parsed");
        let (rows, rejected) = summary(&p);
        assert_eq!(rows, vec![row(1, "1002", "B", "S", None)]);
        assert_eq!(
            rejected,
            vec![
                "line 1 (element 1): extension: must be at least 2 characters, got 1",
                "line 1 (element 1): agent_name: is required and may not be blank",
                "line 1 (element 1): department: is required and may not be blank",
                "line 1 (element 3): expected an object, got a number",
                "line 1 (element 4): extension: must contain only the digits 0-9",
            ]
        );
        assert_eq!(p.rejected_rows(), 3);
    }

    #[test]
    fn json_that_is_not_an_array_is_refused_with_its_line() {
        let rows = [
            (
                "{\"extension\": \"1001\"}",
                "JSON: line 1: expected an array of objects (`[ {...}, ... ]`)",
            ),
            (
                "[\n{\"extension\": \"1001\",}\n]",
                "JSON: line 2: trailing comma",
            ),
            (
                "[\n{}\n{}]",
                "JSON: line 3: expected `,` or `]` after an element",
            ),
            ("[{}", "JSON: line 1: expected `,` or `]` after an element"),
            ("[{}] x", "JSON: line 1: unexpected text after the array"),
        ];
        for (text, want) in rows {
            assert_eq!(parse_json(text).expect_err(text).to_string(), want);
        }
    }

    #[test]
    fn ranges() {
        let sales = Department::parse("Sales").expect("dept");
        let names = |spec: &str| -> Result<Vec<String>, String> {
            parse_range(spec, &sales)
                .map(|rows| {
                    rows.iter()
                        .map(|r| format!("{}={}", r.extension, r.agent_name))
                        .collect()
                })
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            names("1001-1003"),
            Ok(vec![
                "1001=Agent 1001".to_owned(),
                "1002=Agent 1002".to_owned(),
                "1003=Agent 1003".to_owned()
            ])
        );
        assert_eq!(names("0098-0100").expect("width kept").len(), 3);
        assert_eq!(
            names("0098-0100").expect("width kept")[0],
            "0098=Agent 0098"
        );
        assert_eq!(names("98-100").expect("mixed widths").len(), 3);
        assert_eq!(names(" 42-42 "), Ok(vec!["42=Agent 42".to_owned()]));
        assert_eq!(parse_range("1001-1050", &sales).expect("50").len(), 50);
        let bad = [
            ("1001", "--range: \"1001\" must look like 1001-1050"),
            (
                "1050-1001",
                "--range: the start 1050 is after the end 1001; write the smaller number first",
            ),
            (
                "1-5",
                "--range: \"1\": extension must be at least 2 characters, got 1",
            ),
            (
                "10000000000-10000000001",
                "--range: \"10000000000\": extension must be at most 10 characters, got 11",
            ),
            (
                "10-x",
                "--range: \"x\": extension must contain only the digits 0-9",
            ),
            (
                "100000-200000",
                "--range: 100000-200000 would create 100001 extensions; at most 100000 at once",
            ),
            (
                "098-1000",
                "--range: 098 and 1000 have different widths and a leading zero; write both ends with the same number of digits",
            ),
        ];
        for (spec, want) in bad {
            assert_eq!(names(spec), Err(want.to_owned()), "{spec}");
        }
        // The largest allowed range is fine.
        assert_eq!(names("100000-199999").expect("max").len(), 100_000);
    }
}
