//! LVM2's text metadata format (lvm2's `libdm/libdm-config.c`): sections
//! `name { ... }` holding assignments `key = value` and more sections;
//! values are integers, double-quoted strings (`\"` and `\\` escaped) and
//! lists `[ v, v, ... ]`; `#` starts a comment that runs to the end of the
//! line. The top level is a section without braces.
//!
//! The parser never panics: bad input is an error naming the line and
//! column, what was expected and what was found. Nesting is limited so a
//! hostile text cannot exhaust the stack.

use std::fmt;

/// Sections nested deeper than this are refused (real metadata nests 5).
pub const MAX_DEPTH: usize = 32;

/// A value on the right of `=`.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    /// A number with a fraction (lvm.conf has some; metadata has none).
    Float(f64),
    Str(String),
    List(Vec<Value>),
}

impl Value {
    /// What this value is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number with a fraction",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
        }
    }
}

/// One entry of a section.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Assign {
        key: String,
        value: Value,
        line: usize,
    },
    Section(Section),
}

/// `name { items }`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Section {
    pub name: String,
    pub line: usize,
    pub items: Vec<Item>,
}

impl Section {
    /// The value assigned to `key` here (the last one if repeated).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.items.iter().rev().find_map(|i| match i {
            Item::Assign { key: k, value, .. } if k == key => Some(value),
            _ => None,
        })
    }

    /// The line `key` is assigned on, for messages.
    pub fn line_of(&self, key: &str) -> usize {
        self.items
            .iter()
            .rev()
            .find_map(|i| match i {
                Item::Assign { key: k, line, .. } if k == key => Some(*line),
                _ => None,
            })
            .unwrap_or(self.line)
    }

    /// The subsection `name`.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections().find(|s| s.name == name)
    }

    /// Subsections in order.
    pub fn sections(&self) -> impl Iterator<Item = &Section> {
        self.items.iter().filter_map(|i| match i {
            Item::Section(s) => Some(s),
            _ => None,
        })
    }
}

/// Where parsing stopped and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "metadata text line {} column {}: {}",
            self.line, self.column, self.message
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Int(i64),
    Float(f64),
    Eq,
    Open,
    Close,
    LOpen,
    LClose,
    Comma,
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("'{w}'"),
            Tok::Str(_) => "a string".into(),
            Tok::Int(_) | Tok::Float(_) => "a number".into(),
            Tok::Eq => "'='".into(),
            Tok::Open => "'{'".into(),
            Tok::Close => "'}'".into(),
            Tok::LOpen => "'['".into(),
            Tok::LClose => "']'".into(),
            Tok::Comma => "','".into(),
            Tok::End => "the end of the text".into(),
        }
    }
}

struct Lexer<'a> {
    b: &'a [u8],
    pos: usize,
    line: usize,
    col: usize,
}

fn is_word_byte(c: u8) -> bool {
    !c.is_ascii_whitespace() && !b"{}[]=,\"#".contains(&c)
}

impl<'a> Lexer<'a> {
    fn err(&self, line: usize, column: usize, message: String) -> ParseError {
        ParseError {
            line,
            column,
            message,
        }
    }

    fn bump(&mut self) -> Option<u8> {
        let c = *self.b.get(self.pos)?;
        self.pos += 1;
        if c == b'\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    /// The next token with the line and column it starts at.
    fn next(&mut self) -> Result<(Tok, usize, usize), ParseError> {
        loop {
            match self.b.get(self.pos) {
                Some(c) if c.is_ascii_whitespace() => {
                    self.bump();
                }
                Some(b'#') => {
                    while let Some(c) = self.bump() {
                        if c == b'\n' {
                            break;
                        }
                    }
                }
                _ => break,
            }
        }
        let (line, col) = (self.line, self.col);
        let Some(c) = self.bump() else {
            return Ok((Tok::End, line, col));
        };
        let tok = match c {
            b'=' => Tok::Eq,
            b'{' => Tok::Open,
            b'}' => Tok::Close,
            b'[' => Tok::LOpen,
            b']' => Tok::LClose,
            b',' => Tok::Comma,
            b'"' => {
                let mut s = Vec::new();
                loop {
                    match self.bump() {
                        None => {
                            return Err(self.err(
                                line,
                                col,
                                "string not closed: expected '\"', found the end of the text"
                                    .into(),
                            ))
                        }
                        Some(b'"') => break,
                        Some(b'\\') => match self.bump() {
                            Some(e) => s.push(e),
                            None => {
                                return Err(self.err(
                                    line,
                                    col,
                                    "string ends in a lone '\\'".into(),
                                ))
                            }
                        },
                        Some(x) => s.push(x),
                    }
                }
                Tok::Str(String::from_utf8_lossy(&s).into_owned())
            }
            _ => {
                let start = self.pos - 1;
                while self.b.get(self.pos).is_some_and(|&c| is_word_byte(c)) {
                    self.bump();
                }
                let w = String::from_utf8_lossy(&self.b[start..self.pos]).into_owned();
                let numeric = w.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+')
                    && w.len() > usize::from(w.starts_with(['-', '+']));
                if numeric && w[1..].bytes().all(|c| c.is_ascii_digit()) {
                    match w.parse::<i64>() {
                        Ok(n) => Tok::Int(n),
                        Err(_) => {
                            return Err(self.err(
                                line,
                                col,
                                format!("integer {w} is out of range (64 bits, signed)"),
                            ))
                        }
                    }
                } else if numeric && w.parse::<f64>().is_ok() && w.contains('.') {
                    Tok::Float(w.parse().unwrap_or(0.0))
                } else {
                    Tok::Word(w)
                }
            }
        };
        Ok((tok, line, col))
    }
}

struct Parser<'a> {
    lex: Lexer<'a>,
    peeked: Option<(Tok, usize, usize)>,
}

impl<'a> Parser<'a> {
    fn next(&mut self) -> Result<(Tok, usize, usize), ParseError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex.next(),
        }
    }

    fn peek(&mut self) -> Result<&(Tok, usize, usize), ParseError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lex.next()?);
        }
        Ok(self.peeked.as_ref().expect("just filled"))
    }

    fn unexpected(t: &(Tok, usize, usize), expected: &str) -> ParseError {
        ParseError {
            line: t.1,
            column: t.2,
            message: format!("expected {expected}, found {}", t.0.describe()),
        }
    }

    /// Items up to `}` (`top`: up to the end of the text).
    fn items(&mut self, top: bool, depth: usize) -> Result<Vec<Item>, ParseError> {
        let mut items = Vec::new();
        loop {
            let t = self.next()?;
            let name = match t.0 {
                Tok::End if top => return Ok(items),
                Tok::Close if !top => return Ok(items),
                Tok::Word(ref w) => w.clone(),
                _ => {
                    return Err(Self::unexpected(
                        &t,
                        if top { "a name" } else { "a name or '}'" },
                    ))
                }
            };
            let after = self.next()?;
            match after.0 {
                Tok::Eq => {
                    let value = self.value(false)?;
                    items.push(Item::Assign {
                        key: name,
                        value,
                        line: t.1,
                    });
                }
                Tok::Open => {
                    if depth >= MAX_DEPTH {
                        return Err(ParseError {
                            line: after.1,
                            column: after.2,
                            message: format!("sections nested deeper than {MAX_DEPTH}"),
                        });
                    }
                    let inner = self.items(false, depth + 1)?;
                    items.push(Item::Section(Section {
                        name,
                        line: t.1,
                        items: inner,
                    }));
                }
                _ => {
                    return Err(Self::unexpected(
                        &after,
                        &format!("'=' or '{{' after '{name}'"),
                    ))
                }
            }
        }
    }

    fn value(&mut self, in_list: bool) -> Result<Value, ParseError> {
        let t = self.next()?;
        Ok(match t.0 {
            Tok::Int(n) => Value::Int(n),
            Tok::Float(f) => Value::Float(f),
            Tok::Str(s) => Value::Str(s),
            Tok::LOpen if !in_list => {
                let mut list = Vec::new();
                if self.peek()?.0 == Tok::LClose {
                    self.next()?;
                    return Ok(Value::List(list));
                }
                loop {
                    list.push(self.value(true)?);
                    let sep = self.next()?;
                    match sep.0 {
                        Tok::Comma => continue,
                        Tok::LClose => break,
                        _ => return Err(Self::unexpected(&sep, "',' or ']'")),
                    }
                }
                Value::List(list)
            }
            _ => {
                return Err(Self::unexpected(
                    &t,
                    if in_list {
                        "a string or a number"
                    } else {
                        "a value (string, number or list)"
                    },
                ))
            }
        })
    }
}

/// Parses a whole metadata text into its top-level section (name "").
pub fn parse(text: &str) -> Result<Section, ParseError> {
    let mut p = Parser {
        lex: Lexer {
            b: text.as_bytes(),
            pos: 0,
            line: 1,
            col: 1,
        },
        peeked: None,
    };
    let items = p.items(true, 0)?;
    Ok(Section {
        name: String::new(),
        line: 1,
        items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_sections_values_and_comments() {
        let s = parse(
            "# Generated by LVM2\nvg {\n id = \"a-b\"\n seqno = 3\n status = [\"READ\", \"WRITE\"]\n \
             flags = []\n sub { x = -5 stripes = [\n\"pv0\", 0,\n\"pv1\", 12\n] }\n}\n\
             contents = \"Text Format Volume Group\" # trailing\nversion = 1\ncreation_host = \"h\\\"q\\\\\"\n",
        )
        .unwrap();
        let vg = s.section("vg").unwrap();
        assert_eq!(vg.get("id"), Some(&Value::Str("a-b".into())));
        assert_eq!(vg.get("seqno"), Some(&Value::Int(3)));
        assert_eq!(vg.line_of("seqno"), 4);
        assert_eq!(
            vg.get("status"),
            Some(&Value::List(vec![
                Value::Str("READ".into()),
                Value::Str("WRITE".into())
            ]))
        );
        assert_eq!(vg.get("flags"), Some(&Value::List(vec![])));
        let sub = vg.section("sub").unwrap();
        assert_eq!(sub.get("x"), Some(&Value::Int(-5)));
        assert_eq!(
            sub.get("stripes"),
            Some(&Value::List(vec![
                Value::Str("pv0".into()),
                Value::Int(0),
                Value::Str("pv1".into()),
                Value::Int(12)
            ]))
        );
        assert_eq!(s.get("version"), Some(&Value::Int(1)));
        assert_eq!(s.get("creation_host"), Some(&Value::Str("h\"q\\".into())));
    }

    #[test]
    fn names_with_dashes_dots_and_plus() {
        let s = parse("my-vg.1 { lv+x_y-z { a = 1 } }").unwrap();
        let vg = s.section("my-vg.1").unwrap();
        assert!(vg.section("lv+x_y-z").is_some());
    }

    #[test]
    fn errors_name_line_column_and_what_was_expected() {
        let e = parse("vg {\n  id = \n}").unwrap_err();
        assert_eq!((e.line, e.column), (3, 1));
        assert!(e.message.contains("expected a value"), "{e}");
        let e = parse("vg {\n a = \"open").unwrap_err();
        assert!(e.message.contains("not closed"), "{e}");
        let e = parse("vg {\n a = 1").unwrap_err();
        assert!(e.message.contains("found the end of the text"), "{e}");
        let e = parse("vg { a = [1 2] }").unwrap_err();
        assert!(e.message.contains("',' or ']'"), "{e}");
        let e = parse("vg { a = [[1]] }").unwrap_err();
        assert!(e.message.contains("a string or a number"), "{e}");
        let e = parse("}").unwrap_err();
        assert!(e.message.contains("expected a name"), "{e}");
        let e = parse("a = 99999999999999999999").unwrap_err();
        assert!(e.message.contains("out of range"), "{e}");
        let deep = "a {".repeat(MAX_DEPTH + 2);
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("nested deeper"), "{e}");
    }
}
