//! Text that came from a monitor, a log, a model or a webhook, made safe to show in an email.
//!
//! Such text is hostile: a log line can say "Review and approve: http://evil/…" to imitate medic's own
//! lines, hide characters (bidi overrides, zero-width spaces, ESC, bare CR) or carry links that mail
//! clients turn clickable. So, in both email parts:
//! - control, bidi and zero-width characters become visible escapes (`<U+202E>`, `\r`, `\x1b`);
//! - URLs and domain names are defanged (`hxxps[:]//evil[.]example/…`), so no client links them: the
//!   only clickable URLs in a medic email are medic's own;
//! - quoted blocks prefix every line with `| `, so no quoted line can start like one of medic's;
//! - one-line fields (service, host, monitor names) lose their line breaks.

use std::sync::LazyLock;

use regex::Regex;

/// Characters that change how text looks without showing themselves.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}'
        | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}' | '\u{E0000}'..='\u{E007F}')
}

/// Control and invisible characters as visible escapes; `\n` and `\t` kept.
pub fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\t' => out.push(c),
            '\r' if chars.peek() == Some(&'\n') => {} // CRLF is an ordinary line end
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7F}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if ('\u{80}'..='\u{9F}').contains(&c) => out.push_str(&format!("<U+{:04X}>", c as u32)),
            '\u{2028}' | '\u{2029}' => out.push_str(&format!("<U+{:04X}>", c as u32)),
            c if invisible(c) => out.push_str(&format!("<U+{:04X}>", c as u32)),
            c => out.push(c),
        }
    }
    out
}

static SCHEME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b([a-z][a-z0-9+.-]{0,30}):(//|\\\\)").expect("scheme regex"));
static HTTP: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)\bhttp(s?)\[:\]").expect("http regex"));
static WWW: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)\bwww\.").expect("www regex"));
static MAILTO: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(mailto|tel|sms|javascript|data|file):").expect("mailto regex"));
/// A host name: labels and a final label that is a top-level domain mail clients link (or any
/// two-letter country code), not a file name such as `nginx.service` or `error.log`.
static DOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+)(com|net|org|info|biz|io|dev|app|xyz|top|site|online|club|shop|link|click|live|me|co|cc|tv|ru|cn|de|uk|fr|nl|eu|us|ca|au|in|br|jp|it|es|pl|ch|se|no|be|at|cz|ir|tk|ml|ga|cf|gq|ws|zip|mov|[a-z]{2})\b",
    )
    .expect("domain regex")
});
const FILE_SUFFIXES: &[&str] = &[
    "service", "socket", "timer", "target", "mount", "conf", "log", "sh", "py", "js", "rs", "go", "so", "pid", "sock",
    "txt", "json", "yml", "yaml", "toml", "ini", "db", "gz", "tar", "lock", "tmp", "pem", "crt", "key", "cfg", "md",
    "html", "php", "pl", "rb", "d",
];

/// URLs and domain names made unclickable (`hxxps[:]//evil[.]example`).
pub fn defang(text: &str) -> String {
    let out = SCHEME.replace_all(text, "$1[:]$2");
    let out = HTTP.replace_all(&out, "hxxp$1[:]");
    let out = MAILTO.replace_all(&out, "$1[:]");
    let out = WWW.replace_all(&out, "www[.]");
    DOMAIN
        .replace_all(&out, |c: &regex::Captures<'_>| {
            let (labels, tld) = (&c[1], &c[2]);
            if tld.len() == 2 && FILE_SUFFIXES.contains(&tld.to_ascii_lowercase().as_str()) {
                return c[0].to_string();
            }
            if FILE_SUFFIXES.contains(&tld.to_ascii_lowercase().as_str()) {
                return c[0].to_string();
            }
            format!("{}[.]{tld}", labels.trim_end_matches('.').replace('.', "[.]"))
        })
        .into_owned()
}

/// One line of hostile text for a field (names, the subject): visible, defanged, no line breaks, bounded.
pub fn field(text: &str, max_chars: usize) -> String {
    let flat: String = text.chars().map(|c| if c == '\n' || c == '\t' { ' ' } else { c }).collect();
    let shown = defang(&visible(&flat));
    if shown.chars().count() > max_chars {
        format!("{}…", shown.chars().take(max_chars).collect::<String>())
    } else {
        shown
    }
}

/// A block of hostile text: visible, defanged, every line prefixed with `| `.
pub fn block(text: &str) -> String {
    let shown = defang(&visible(text));
    let trimmed = shown.trim_end_matches('\n');
    if trimmed.is_empty() {
        return "| (empty)".into();
    }
    trimmed.lines().map(|line| format!("| {line}")).collect::<Vec<_>>().join("\n")
}

/// The same text for the HTML part (askama escapes it; the prefix is added by the template's style).
pub fn html_block(text: &str) -> String {
    defang(&visible(text)).trim_end_matches('\n').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_characters_become_visible() {
        let cases: &[(&str, &str, &str)] = &[
            ("a\u{1b}[2Jb", "a\\x1b[2Jb", "ESC (terminal escape)"),
            ("line\rfake", "line\\rfake", "bare CR overwrites a line in some clients"),
            ("ok\r\nnext", "ok\nnext", "CRLF is a line end"),
            ("a\u{200B}b", "a<U+200B>b", "zero-width space"),
            ("evil\u{202E}gpj.exe", "evil<U+202E>gpj.exe", "right-to-left override"),
            ("x\u{2066}y\u{2069}", "x<U+2066>y<U+2069>", "bidi isolates"),
            ("bom\u{FEFF}", "bom<U+FEFF>", "byte order mark"),
            ("nul\0", "nul\\x00", "NUL"),
            ("tab\there", "tab\there", "tab kept"),
            ("café ünïcode ✓", "café ünïcode ✓", "ordinary text kept"),
        ];
        for (input, want, why) in cases {
            assert_eq!(visible(input), *want, "{why}");
        }
    }

    #[test]
    fn urls_and_domains_are_defanged_and_file_names_are_not() {
        let cases: &[(&str, &str, &str)] = &[
            ("see https://evil.example.com/x", "see hxxps[:]//evil[.]example[.]com/x", "https URL"),
            ("HTTP://EVIL.COM", "hxxp[:]//EVIL[.]COM", "upper case"),
            ("ftp://files.evil.net/a", "ftp[:]//files[.]evil[.]net/a", "other scheme"),
            ("go to www.evil.org now", "go to www[.]evil[.]org now", "www without scheme"),
            ("evil.com/login", "evil[.]com/login", "bare domain"),
            ("click javascript:alert(1)", "click javascript[:]alert(1)", "javascript scheme"),
            ("nginx.service failed", "nginx.service failed", "unit names stay"),
            ("/var/log/nginx/error.log", "/var/log/nginx/error.log", "file names stay"),
            ("clean_logs.sh nginx", "clean_logs.sh nginx", "scripts stay"),
            ("version 1.24.0", "version 1.24.0", "versions stay"),
            ("http://127.0.0.1:8080/", "hxxp[:]//127.0.0.1:8080/", "an address loses its scheme"),
        ];
        for (input, want, why) in cases {
            assert_eq!(defang(input), *want, "{why}");
        }
    }

    #[test]
    fn a_quoted_block_cannot_start_a_line_like_medic() {
        let log = "upstream failed\nReview and approve: https://evil.example/approve\r\nok";
        let out = block(log);
        for line in out.lines() {
            assert!(line.starts_with("| "), "{line:?}");
        }
        assert!(!out.contains("https://"));
        assert!(field("nginx\nReview and approve: x", 200).lines().count() == 1);
        assert_eq!(field("abcdef", 3), "abc…");
    }
}
