//! `key` / `key_file` secrets, read once into `SecretString`.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use crate::config::load::Cx;

/// Shortest accepted shared secret: API tokens, webhook credentials and
/// the Statuspage path token alike.
pub(super) const MIN_SECRET_CHARS: usize = 16;

/// Resolves `key` / `key_file`: exactly one may be set; a file is read now
/// (relative paths against the config file's directory), trailing newline
/// trimmed. Errors never contain the secret.
pub(super) fn secret(
    cx: &mut Cx,
    key: &str,
    inline: &mut Option<SecretString>,
    file: &Option<PathBuf>,
    base: &Path,
    required: bool,
) {
    match (inline.is_some(), file) {
        (true, Some(_)) => cx.err(
            key,
            format!("set `{}` or `{}_file`, not both", leaf(key), leaf(key)),
        ),
        (false, Some(path)) => {
            let full = if path.is_absolute() {
                path.clone()
            } else {
                base.join(path)
            };
            match std::fs::read_to_string(&full) {
                Ok(s) => {
                    let s = s.trim_end_matches(['\n', '\r']).to_string();
                    if s.is_empty() {
                        cx.err(
                            format!("{key}_file"),
                            format!("{} is empty", full.display()),
                        );
                    } else {
                        *inline = Some(SecretString::from(s));
                    }
                }
                Err(e) => cx.err(
                    format!("{key}_file"),
                    format!("cannot read {}: {e}", full.display()),
                ),
            }
        }
        (true, None) => {
            if inline
                .as_ref()
                .is_some_and(|s| s.expose_secret().trim().is_empty())
            {
                cx.err(key, "must not be empty");
            }
        }
        (false, None) if required => cx.err(
            key,
            format!("missing: set `{}` or `{}_file`", leaf(key), leaf(key)),
        ),
        (false, None) => {}
    }
}

fn leaf(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}
