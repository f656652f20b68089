//! Port forwarding (direct-tcpip) and HTTP GET through the SSH connection.

use std::time::Duration;

use russh::client::{self};

use super::Session;
use crate::SshError;

/// What an HTTP GET through the SSH connection answered.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code (200, 503, ...).
    pub status: u16,
    /// The body, as sent.
    pub body: Vec<u8>,
}

impl Session {
    /// Opens a direct-tcpip channel (what `ssh -L` uses) from the host to `host:port` as the
    /// host itself sees it: `127.0.0.1` reaches a service bound to the host's loopback.
    ///
    /// # Errors
    /// [`SshError::Protocol`] when the server refuses the channel (sshd `AllowTcpForwarding
    /// no`, or nothing listens there).
    pub async fn open_tcp(&self, host: &str, port: u16) -> Result<russh::ChannelStream<client::Msg>, SshError> {
        let channel = self
            .handle
            .channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0)
            .await
            .map_err(|e| SshError::from(e).on(&self.target.name))?;
        Ok(channel.into_stream())
    }

    /// `GET path` on the host's own `127.0.0.1:port`, through a forwarded channel of this
    /// session (HTTP/1.1, hyper), within `timeout`. Any status is returned; only a request
    /// that gets no HTTP answer is an error. No curl is needed on the host. The body is read
    /// up to `max_body` bytes (it is held in memory).
    ///
    /// # Errors
    /// [`SshError::Http`]: the channel was refused, the answer was not HTTP, its body is
    /// longer than `max_body`, or `timeout` passed.
    pub async fn http_get(
        &self,
        port: u16,
        path: &str,
        timeout: Duration,
        max_body: usize,
    ) -> Result<HttpResponse, SshError> {
        use http_body_util::BodyExt as _;
        let err = |reason: String| SshError::Http {
            host: self.target.name.clone(),
            port,
            path: path.to_owned(),
            reason,
        };
        let request = async {
            let stream = self.open_tcp("127.0.0.1", port).await.map_err(|e| err(e.to_string()))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| err(e.to_string()))?;
            let driver = tokio::spawn(conn);
            let req = hyper::Request::get(path)
                .header(hyper::header::HOST, format!("127.0.0.1:{port}"))
                .body(http_body_util::Empty::<hyper::body::Bytes>::new())
                .map_err(|e| err(e.to_string()))?;
            let resp = sender.send_request(req).await.map_err(|e| err(e.to_string()))?;
            let status = resp.status().as_u16();
            let body = http_body_util::Limited::new(resp.into_body(), max_body)
                .collect()
                .await
                .map_err(|e| err(format!("{e} (at most {max_body} bytes are read)")))?
                .to_bytes()
                .to_vec();
            driver.abort();
            Ok(HttpResponse { status, body })
        };
        tokio::time::timeout(timeout, request)
            .await
            .unwrap_or_else(|_| Err(err(format!("no answer within {timeout:?}"))))
    }
}
