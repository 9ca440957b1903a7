//! Alertmanager-style label matchers: `name="value"`, `name!="value"`,
//! `name=~"regex"`, `name!~"regex"`. Regexes are anchored on both ends, as in
//! Alertmanager, so `severity=~"critical|page"` does not match `"paging"`.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    NotEq,
    Re,
    NotRe,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::NotEq => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

impl Matcher {
    /// Parses one matcher. Errors say what is wrong in operator terms.
    pub fn parse(input: &str) -> Result<Matcher, String> {
        let s = input.trim();
        let name_end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| format!("matcher {input:?} has no operator; use =, !=, =~ or !~"))?;
        let name = &s[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "matcher {input:?} must start with a label name ([a-zA-Z_][a-zA-Z0-9_]*)"
            ));
        }
        let rest = s[name_end..].trim_start();
        let (op, rest) = if let Some(r) = rest.strip_prefix("=~") {
            (MatchOp::Re, r)
        } else if let Some(r) = rest.strip_prefix("!~") {
            (MatchOp::NotRe, r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            (MatchOp::NotEq, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (MatchOp::Eq, r)
        } else {
            return Err(format!(
                "matcher {input:?} has no valid operator after {name:?}; use =, !=, =~ or !~"
            ));
        };
        let value = unquote(rest.trim()).map_err(|why| format!("matcher {input:?}: {why}"))?;
        let regex = match op {
            MatchOp::Re | MatchOp::NotRe => {
                Some(Regex::new(&format!("^(?:{value})$")).map_err(|e| {
                    format!(
                        "matcher {input:?}: invalid regex {value:?}: {}",
                        first_line(&e.to_string())
                    )
                })?)
            }
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value,
            regex,
        })
    }

    /// Whether the label set satisfies this matcher. A missing label is the empty
    /// string, as in Alertmanager (`foo=""` matches alerts without `foo`).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match (self.op, &self.regex) {
            (MatchOp::Eq, _) => v == self.value,
            (MatchOp::NotEq, _) => v != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(v),
            (MatchOp::NotRe, Some(re)) => !re.is_match(v),
            // Regex ops always carry a compiled regex (see `parse`).
            (MatchOp::Re | MatchOp::NotRe, None) => false,
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

/// Accepts `"quoted"` (with `\"` and `\\` escapes) or a bare value without spaces.
fn unquote(s: &str) -> Result<String, String> {
    if let Some(inner) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = inner.chars();
        loop {
            match chars.next() {
                None => return Err("unterminated quoted value".into()),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('n') => out.push('\n'),
                    Some(c) => {
                        // Keep unknown escapes verbatim: regexes use `\d`, `\.` etc.
                        out.push('\\');
                        out.push(c);
                    }
                    None => return Err("unterminated quoted value".into()),
                },
                Some(c) => out.push(c),
            }
        }
        if !chars.as_str().trim().is_empty() {
            return Err(format!(
                "unexpected text after the quoted value: {:?}",
                chars.as_str()
            ));
        }
        Ok(out)
    } else if s.contains(char::is_whitespace) || s.contains('"') {
        Err("a value with spaces or quotes must be written in double quotes".into())
    } else {
        Ok(s.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_all_four_operators() {
        let cases = [
            (
                r#"alertname="TalkdeskVoiceDown""#,
                MatchOp::Eq,
                "TalkdeskVoiceDown",
            ),
            (r#"env!="staging""#, MatchOp::NotEq, "staging"),
            (r#"severity=~"critical|page""#, MatchOp::Re, "critical|page"),
            (r#"team!~"db.*""#, MatchOp::NotRe, "db.*"),
            (r#"job=sip"#, MatchOp::Eq, "sip"),
        ];
        for (input, op, value) in cases {
            let m = Matcher::parse(input).unwrap();
            assert_eq!((m.op, m.value.as_str()), (op, value), "{input}");
        }
    }

    #[test]
    fn regexes_are_anchored() {
        let m = Matcher::parse(r#"severity=~"critical|page""#).unwrap();
        assert!(m.matches(&labels(&[("severity", "page")])));
        assert!(!m.matches(&labels(&[("severity", "paging")])));
        let n = Matcher::parse(r#"severity!~"info""#).unwrap();
        assert!(n.matches(&labels(&[])));
    }

    #[test]
    fn missing_label_is_empty_string() {
        assert!(Matcher::parse(r#"foo="""#).unwrap().matches(&labels(&[])));
        assert!(!Matcher::parse(r#"foo="x""#).unwrap().matches(&labels(&[])));
    }

    #[test]
    fn bad_matchers_are_explained() {
        assert!(
            Matcher::parse("alertname")
                .unwrap_err()
                .contains("no operator")
        );
        assert!(
            Matcher::parse(r#"1abc="x""#)
                .unwrap_err()
                .contains("label name")
        );
        assert!(
            Matcher::parse(r#"a=~"(""#)
                .unwrap_err()
                .contains("invalid regex")
        );
        assert!(
            Matcher::parse(r#"a="x"#)
                .unwrap_err()
                .contains("unterminated")
        );
        assert!(Matcher::parse(r#"a>"x""#).unwrap_err().contains("operator"));
    }
}
