//! Captured HTTP answers, for presets that ask every host over HTTP (`http`, `nats`): what
//! `rollgate probe parse` and the parsers' tests read instead of live hosts.
//!
//! A capture is one folder per host; in it, one file per request, the answer as `curl -si`
//! prints it (status line, headers, a blank line, the body), named after the request's path
//! without its query: `GET /varz` is `varz.http`, `GET /healthz?js-server-only=true` is
//! `healthz.http`, `GET /api/v1/stats` is `api_v1_stats.http` (lab/capture-nats writes
//! such folders).

use std::path::Path;

use super::HostAnswers;

/// The file name of the answer to `GET path` in a host's capture folder.
pub fn file_name(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    format!("{}.http", path.trim_start_matches('/').replace('/', "_"))
}

/// Reads an answer as `curl -si` prints it: `(status, body)`.
///
/// # Errors
/// The text does not start with an HTTP status line (`HTTP/1.1 200 OK`).
pub fn parse_answer(text: &str) -> Result<(u16, String), String> {
    let status = text
        .lines()
        .next()
        .filter(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("does not start with an HTTP status line (`HTTP/1.1 200 OK`, as `curl -si` prints)")?;
    let body = text
        .split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .map_or("", |(_, b)| b);
    Ok((status, body.to_owned()))
}

/// The answers of host `name` (at `address`) to each of `paths`, from its capture folder
/// `folder`. A missing folder or file is a request that got no answer.
///
/// # Errors
/// A file that cannot be read or is not an HTTP answer, naming it.
pub fn read_host(folder: &Path, name: &str, address: &str, paths: &[&str]) -> Result<HostAnswers, String> {
    let mut answers = Vec::new();
    for p in paths {
        let file = folder.join(file_name(p));
        let answer = match std::fs::read_to_string(&file) {
            Ok(text) => Ok(parse_answer(&text).map_err(|e| format!("{}: {e}", file.display()))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("no answer captured".to_owned()),
            Err(e) => return Err(format!("reading {}: {e}", file.display())),
        };
        answers.push(((*p).to_owned(), answer));
    }
    Ok(HostAnswers {
        name: name.to_owned(),
        address: address.to_owned(),
        answers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_answers() {
        assert_eq!(file_name("/varz"), "varz.http");
        assert_eq!(file_name("/healthz?js-server-only=true"), "healthz.http");
        assert_eq!(file_name("/api/v1/stats"), "api_v1_stats.http");
        let (status, body) = parse_answer("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!((status, body.as_str()), (503, "{}"));
        assert!(parse_answer("{\"status\":\"ok\"}").unwrap_err().contains("status line"));
    }
}
