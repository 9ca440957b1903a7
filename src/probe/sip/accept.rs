//! Which SIP response codes count as "the trunk is up" (`accept`).
//!
//! Kamailio's default is 200 only; carriers often need more (Asterisk answers
//! 404/484 for unknown peers, some Cisco gateways 501). The list is explicit
//! per probe. A timeout is never a response, so our locally generated 408 can
//! never be accepted whatever the list says.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// `"2xx"`: every code of the class.
    Class(u16),
    Code(u16),
}

/// A parsed `accept` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accept(Vec<Rule>);

impl Default for Accept {
    /// `["2xx"]`.
    fn default() -> Self {
        Accept(vec![Rule::Class(2)])
    }
}

impl Accept {
    /// Parse entries like `"2xx"`, `"3xx"`, `"404"`. An empty list is an error:
    /// it would make the probe permanently down.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Accept, String> {
        if entries.is_empty() {
            return Err("empty list; omit `accept` for the default [\"2xx\"]".into());
        }
        let mut rules = Vec::new();
        for e in entries {
            let e = e.as_ref().trim();
            let lower = e.to_ascii_lowercase();
            let rule = if let Some(class) = lower.strip_suffix("xx") {
                match class.parse::<u16>() {
                    Ok(c) if (1..=6).contains(&c) && class.len() == 1 => Rule::Class(c),
                    _ => {
                        return Err(format!(
                            "\"{e}\" is not a response class; use \"2xx\" to \"6xx\""
                        ));
                    }
                }
            } else {
                match e.parse::<u16>() {
                    Ok(c) if (100..=699).contains(&c) => Rule::Code(c),
                    _ => {
                        return Err(format!(
                            "\"{e}\" is not a SIP response code; use a class like \"2xx\" or a code from 100 to 699"
                        ));
                    }
                }
            };
            rules.push(rule);
        }
        Ok(Accept(rules))
    }

    /// Whether a final response with this code means "up".
    pub fn accepts(&self, code: u16) -> bool {
        code >= 200
            && self.0.iter().any(|r| match *r {
                Rule::Class(c) => code / 100 == c,
                Rule::Code(c) => code == c,
            })
    }
}

impl fmt::Display for Accept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match r {
                Rule::Class(c) => write!(f, "{c}xx")?,
                Rule::Code(c) => write!(f, "{c}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_codes() {
        let a = Accept::default();
        assert!(a.accepts(200) && a.accepts(202) && !a.accepts(404) && !a.accepts(100));
        let a = Accept::parse(&["2xx", "403", "404", "3XX"]).unwrap();
        assert!(a.accepts(404) && a.accepts(302) && !a.accepts(503));
        assert_eq!(a.to_string(), "2xx, 403, 404, 3xx");
        // 1xx is never final, even if listed.
        assert!(!Accept::parse(&["1xx"]).unwrap().accepts(180));
    }

    #[test]
    fn rejects_nonsense() {
        assert!(Accept::parse::<&str>(&[]).unwrap_err().contains("empty"));
        assert!(Accept::parse(&["7xx"]).unwrap_err().contains("class"));
        assert!(Accept::parse(&["22xx"]).unwrap_err().contains("class"));
        assert!(
            Accept::parse(&["ok"])
                .unwrap_err()
                .contains("response code")
        );
        assert!(
            Accept::parse(&["99"])
                .unwrap_err()
                .contains("response code")
        );
    }
}
