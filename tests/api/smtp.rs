//! A real SMTP server for tests (mailin-embedded, in-process, loopback) that keeps every raw message.

use std::io;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailin_embedded::{Handler, Response, Server, SslConfig, response};

#[derive(Clone, Default)]
struct Collector {
    mails: Arc<Mutex<Vec<Vec<u8>>>>,
    current: Vec<u8>,
}

impl Handler for Collector {
    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, _to: &[String]) -> Response {
        self.current.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.current.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        self.mails.lock().unwrap().push(std::mem::take(&mut self.current));
        response::OK
    }
}

pub struct TestSmtp {
    pub port: u16,
    mails: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// A parsed email: subject, both parts.
#[derive(Debug, Clone)]
pub struct Mail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl TestSmtp {
    pub fn start() -> Self {
        Self::start_on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    /// Starts on a given port (a test that needs the server to come up later reserves the port first).
    pub fn start_on(listener: TcpListener) -> Self {
        let port = listener.local_addr().unwrap().port();
        let collector = Collector::default();
        let mails = collector.mails.clone();
        let mut server = Server::new(collector);
        server.with_name("smtp.test").with_ssl(SslConfig::None).unwrap().with_tcp_listener(listener);
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        Self { port, mails }
    }

    pub fn count(&self) -> usize {
        self.mails.lock().unwrap().len()
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().iter().map(|raw| parse(raw)).collect()
    }

    /// Waits until a mail whose subject contains `needle` arrives.
    pub async fn wait_for(&self, needle: &str, secs: u64) -> Mail {
        self.wait_for_nth(needle, 1, secs).await
    }

    /// Waits until the `n`th mail (from 1) whose subject contains `needle` arrives.
    pub async fn wait_for_nth(&self, needle: &str, n: usize, secs: u64) -> Mail {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(m) = self.mails().into_iter().filter(|m| m.subject.contains(needle)).nth(n - 1) {
                return m;
            }
            if tokio::time::Instant::now() > deadline {
                let subjects: Vec<_> = self.mails().into_iter().map(|m| m.subject).collect();
                panic!("no email with {needle:?} in the subject; got {subjects:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn parse(raw: &[u8]) -> Mail {
    let message = mail_parser::MessageParser::default().parse(raw).expect("a MIME message");
    Mail {
        subject: message.subject().unwrap_or_default().to_string(),
        text: message.body_text(0).map(|t| t.into_owned()).unwrap_or_default(),
        html: message.body_html(0).map(|t| t.into_owned()).unwrap_or_default(),
    }
}

/// The approve link from an email's text part (medic's own line, at the start of a line).
pub fn approval_link(mail: &Mail) -> String {
    link_after(mail, "Approve: ")
}

/// The reject link from an email's text part.
pub fn reject_link(mail: &Mail) -> String {
    link_after(mail, "Reject:  ")
}

fn link_after(mail: &Mail, label: &str) -> String {
    let line = mail
        .text
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no line starting with {label:?} in:\n{}", mail.text));
    line[label.len()..].trim().to_string()
}
