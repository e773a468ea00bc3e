//! Array text: `{1,2,NULL}`, `{"a b","say \"hi\"",NULL,"NULL"}`, `{{1,2},{3,4}}`, `{}`, and
//! explicit bounds `[0:1]={7,8}`. Elements are parsed with the element type; a quoted `"NULL"`
//! is the string, an unquoted `NULL` is a NULL element. Nesting is limited to PostgreSQL's six
//! dimensions, so malicious input cannot recurse deeply.

use super::{TypeError, Value, parse as parse_value};

const MAX_DIMS: usize = 6;

pub(super) fn parse(type_oid: u32, element_type: u32, text: &str) -> Result<Value, TypeError> {
    let bad = |reason: &str| TypeError::new(type_oid, text, reason);
    let (bounds, body) = split_bounds(text).map_err(&bad)?;
    let mut parser = Parser {
        chars: body.char_indices().peekable(),
        dims: Vec::new(),
        leaf_depth: None,
        elements: Vec::new(),
    };
    parser.skip_whitespace();
    parser.level(0).map_err(&bad)?;
    parser.skip_whitespace();
    if parser.chars.next().is_some() {
        return Err(bad("text after the closing brace"));
    }
    let Parser { dims, elements, .. } = parser;
    let lower_bounds = match bounds {
        None => vec![1; dims.len()],
        Some(bounds) => {
            if bounds.len() != dims.len()
                || bounds.iter().zip(&dims).any(|((lower, upper), len)| {
                    i64::from(*upper) - i64::from(*lower) + 1 != *len as i64
                })
            {
                return Err(bad("dimension bounds do not match the elements"));
            }
            bounds.iter().map(|(lower, _)| *lower).collect()
        }
    };
    let elements = elements
        .into_iter()
        .map(|element| {
            element
                .map(|text| parse_value(element_type, &text))
                .transpose()
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Value::Array {
        element_type,
        dims,
        lower_bounds,
        elements,
    })
}

type Bounds = Vec<(i32, i32)>;

/// Splits `[1:2][0:3]=` off the front.
fn split_bounds(text: &str) -> Result<(Option<Bounds>, &str), &'static str> {
    if !text.starts_with('[') {
        return Ok((None, text));
    }
    let (decoration, body) = text.split_once('=').ok_or("bounds without `=`")?;
    let mut bounds = Vec::new();
    for part in decoration.split('[').skip(1) {
        let part = part.strip_suffix(']').ok_or("bad bounds")?;
        let (lower, upper) = part.split_once(':').ok_or("bad bounds")?;
        let lower: i32 = lower.parse().map_err(|_| "bad lower bound")?;
        let upper: i32 = upper.parse().map_err(|_| "bad upper bound")?;
        bounds.push((lower, upper));
    }
    if bounds.is_empty() || bounds.len() > MAX_DIMS {
        return Err("bad bounds");
    }
    Ok((Some(bounds), body))
}

struct Parser<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    /// Length of each dimension, outermost first (0 = not yet known).
    dims: Vec<usize>,
    /// The depth at which scalars sit; every scalar must be at the same depth.
    leaf_depth: Option<usize>,
    elements: Vec<Option<String>>,
}

impl Parser<'_> {
    fn skip_whitespace(&mut self) {
        while self.chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().map(|(_, c)| *c)
    }

    /// One `{…}` at `depth`.
    fn level(&mut self, depth: usize) -> Result<(), &'static str> {
        if depth >= MAX_DIMS {
            return Err("more than 6 dimensions");
        }
        if self.chars.next().map(|(_, c)| c) != Some('{') {
            return Err("expected `{`");
        }
        self.skip_whitespace();
        if self.peek() == Some('}') {
            self.chars.next();
            // Only the whole array may be empty.
            return if depth == 0 {
                Ok(())
            } else {
                Err("empty sub-array")
            };
        }
        let mut count = 0usize;
        loop {
            self.skip_whitespace();
            if self.peek() == Some('{') {
                if self.leaf_depth.is_some_and(|leaf| leaf <= depth) {
                    return Err("sub-array where a scalar was expected");
                }
                self.level(depth + 1)?;
            } else {
                match self.leaf_depth {
                    None => self.leaf_depth = Some(depth),
                    Some(leaf) if leaf != depth => {
                        return Err("scalar where a sub-array was expected");
                    }
                    Some(_) => {}
                }
                let element = self.element()?;
                self.elements.push(element);
            }
            count += 1;
            self.skip_whitespace();
            match self.chars.next().map(|(_, c)| c) {
                Some(',') => {}
                Some('}') => break,
                _ => return Err("expected `,` or `}`"),
            }
        }
        if self.dims.len() <= depth {
            self.dims.resize(depth + 1, 0);
        }
        match self.dims.get_mut(depth) {
            Some(known) if *known == 0 => *known = count,
            Some(known) if *known == count => {}
            _ => return Err("sub-arrays have different lengths"),
        }
        Ok(())
    }

    /// A quoted or unquoted element; `None` for an unquoted NULL.
    fn element(&mut self) -> Result<Option<String>, &'static str> {
        let mut out = String::new();
        if self.peek() == Some('"') {
            self.chars.next();
            loop {
                match self.chars.next().map(|(_, c)| c) {
                    Some('"') => return Ok(Some(out)),
                    Some('\\') => out.push(self.chars.next().ok_or("unterminated escape")?.1),
                    Some(c) => out.push(c),
                    None => return Err("unterminated quoted element"),
                }
            }
        }
        let mut escaped = false;
        // Length of `out` up to the last character that was not unescaped whitespace.
        let mut keep = 0;
        while let Some(c) = self.peek() {
            match c {
                ',' | '}' => break,
                '{' | '"' => return Err("unexpected character in an unquoted element"),
                '\\' => {
                    self.chars.next();
                    out.push(self.chars.next().ok_or("unterminated escape")?.1);
                    escaped = true;
                    keep = out.len();
                }
                c => {
                    self.chars.next();
                    out.push(c);
                    if !c.is_whitespace() {
                        keep = out.len();
                    }
                }
            }
        }
        out.truncate(keep);
        if out.is_empty() && !escaped {
            return Err("empty unquoted element");
        }
        if !escaped && out.eq_ignore_ascii_case("NULL") {
            return Ok(None);
        }
        Ok(Some(out))
    }
}
