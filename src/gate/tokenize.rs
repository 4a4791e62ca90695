//! The gate's tokenizer: a conservative character set, then a split on plain spaces, with no expansion of
//! any kind (no quotes, no escapes, no variables, no globs).
//!
//! Allowed: ASCII letters, digits, space and `- _ . / : @ % + , =`. Everything else denies the whole
//! command: quotes, backslash, `$`, backtick, `; | & < > ( ) { } [ ] * ? ~ ! #`, every control character
//! (tab, CR, LF, NUL, ESC), and all non-ASCII (look-alikes, fullwidth forms, zero-width and bidi marks).
//! Whether `=` is acceptable depends on the template (see `gate::rules::PlaceholderType::accepts`).

/// Longest command the gate looks at; longer is denied unread.
pub const MAX_COMMAND_BYTES: usize = 1024;

const SAFE_PUNCT: &[u8] = b"-_./:@%+,=";

#[inline]
pub fn is_safe_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || SAFE_PUNCT.contains(&b)
}

/// A word made only of safe bytes (and not empty).
pub fn is_safe_word(word: &str) -> bool {
    !word.is_empty() && word.bytes().all(is_safe_byte)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenizeError {
    #[error("empty command")]
    Empty,
    #[error("command is {0} bytes, longer than the {MAX_COMMAND_BYTES}-byte limit")]
    TooLong(usize),
    #[error("{what} {shown} at position {position} is not allowed")]
    Forbidden { what: &'static str, shown: String, position: usize },
}

fn describe(c: char) -> &'static str {
    match c {
        '\n' | '\r' => "line break",
        '\t' => "tab",
        '\0' => "NUL",
        '\u{1b}' => "escape sequence",
        c if c.is_ascii_control() => "control character",
        '\'' | '"' => "quote",
        '\\' => "backslash",
        '$' => "variable or substitution",
        '`' => "command substitution",
        ';' | '&' | '|' => "command chaining",
        '<' | '>' => "redirection",
        '(' | ')' | '{' | '}' => "grouping or expansion",
        '[' | ']' | '*' | '?' => "glob",
        '~' => "home expansion",
        '!' => "history expansion",
        '#' => "comment",
        '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}' => {
            "invisible or bidi character"
        }
        c if !c.is_ascii() => "non-ASCII character",
        _ => "character",
    }
}

/// Splits a command into words, or says which character makes it unacceptable.
pub fn tokenize(raw: &str) -> Result<Vec<&str>, TokenizeError> {
    if raw.len() > MAX_COMMAND_BYTES {
        return Err(TokenizeError::TooLong(raw.len()));
    }
    if let Some((position, c)) =
        raw.char_indices().find(|(_, c)| !(*c == ' ' || (c.is_ascii() && is_safe_byte(*c as u8))))
    {
        return Err(TokenizeError::Forbidden {
            what: describe(c),
            shown: format!("{c:?} (U+{:04X})", c as u32),
            position,
        });
    }
    let words: Vec<&str> = raw.split(' ').filter(|w| !w.is_empty()).collect();
    if words.is_empty() {
        return Err(TokenizeError::Empty);
    }
    Ok(words)
}

/// The form blocked patterns are matched on: ASCII-lowercased, every whitespace or control character
/// (Unicode included) turned into one space, invisible characters dropped, runs of spaces folded.
pub fn fold_for_blocklist(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut last_space = true;
    for c in raw.chars() {
        let c = match c {
            '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}' | '\u{ad}' => continue,
            c if c.is_whitespace() || c.is_control() => ' ',
            c => c.to_ascii_lowercase(),
        };
        if c == ' ' {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_split_on_space_runs_only() {
        assert_eq!(tokenize("  systemctl   restart nginx ").unwrap(), ["systemctl", "restart", "nginx"]);
        assert_eq!(tokenize("journalctl --vacuum-size=200M").unwrap(), ["journalctl", "--vacuum-size=200M"]);
    }

    #[test]
    fn each_forbidden_class_is_named() {
        let cases = [
            ("a\tb", "tab"),
            ("a\nb", "line break"),
            ("a\rb", "line break"),
            ("a\0b", "NUL"),
            ("a\u{1b}[31mb", "escape sequence"),
            ("a'b", "quote"),
            ("a\"b", "quote"),
            ("a\\b", "backslash"),
            ("a$b", "variable"),
            ("a`b", "command substitution"),
            ("a;b", "chaining"),
            ("a|b", "chaining"),
            ("a&b", "chaining"),
            ("a>b", "redirection"),
            ("a<b", "redirection"),
            ("a(b", "grouping"),
            ("a{b", "grouping"),
            ("a[b", "glob"),
            ("a*b", "glob"),
            ("a?b", "glob"),
            ("~/x", "home"),
            ("a!b", "history"),
            ("a#b", "comment"),
            ("ngіnx", "non-ASCII"),
            ("ｎginx", "non-ASCII"),
            ("nginx\u{200b}", "invisible"),
            ("nginx\u{202e}", "bidi"),
        ];
        for (raw, what) in cases {
            let e = tokenize(raw).unwrap_err().to_string();
            assert!(e.contains(what), "{raw:?}: {e}");
        }
        assert_eq!(tokenize("   ").unwrap_err(), TokenizeError::Empty);
        assert!(matches!(tokenize(&"a".repeat(2000)), Err(TokenizeError::TooLong(2000))));
    }

    #[test]
    fn blocklist_folding() {
        assert_eq!(fold_for_blocklist("RM\t -RF\n/"), "rm -rf /");
        assert_eq!(fold_for_blocklist("shut\u{200b}down"), "shutdown");
        assert_eq!(fold_for_blocklist("  mkfs  "), "mkfs");
    }
}
