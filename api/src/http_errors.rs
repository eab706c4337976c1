//! The eHealth shape for the errors hyper answers by itself, before any handler runs: a request line or URI
//! it will not parse (400, and 414 for a URI over 64 KB) and headers over its buffer (431). hyper writes
//! those as a bare status line with `content-length: 0` and closes the connection, and offers no hook to
//! change them; so the listener hands hyper connections that recognise such an answer as it is written and
//! send the eHealth error object in its place.
//!
//! Only hyper's own answers match: a 400, 414 or 431 head with `content-length: 0` and no `content-type`.
//! Every answer of the api carries a JSON body and its type.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use axum::http::StatusCode;
use serde_json::json;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};
use uuid::Uuid;

use crate::error::error_body;

/// A TCP listener whose connections answer hyper's own parse errors in the eHealth shape.
pub struct ShapedListener {
    inner: TcpListener,
    base_url: String,
}

impl ShapedListener {
    /// Wraps `inner`; `base_url` becomes `meta.url` of the rewritten answers (the URI is not known then).
    pub fn new(inner: TcpListener, base_url: String) -> Self {
        Self { inner, base_url }
    }
}

impl axum::serve::Listener for ShapedListener {
    type Io = ShapedIo<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        // An answer goes out when it is written, not held back by Nagle's algorithm until the client has
        // acknowledged the previous segment (axum leaves TCP_NODELAY to the listener).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        (ShapedIo::new(stream, self.base_url.clone()), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// One connection: passes everything through, except a head of hyper's own error answer, which it replaces
/// with a whole eHealth error response.
pub struct ShapedIo<T> {
    inner: T,
    base_url: String,
    /// The replacement being written and how much of it is written; once set, hyper's bytes are dropped.
    replacement: Option<(Vec<u8>, usize)>,
}

impl<T> ShapedIo<T> {
    fn new(inner: T, base_url: String) -> Self {
        Self {
            inner,
            base_url,
            replacement: None,
        }
    }
}

/// The status of `head` when it is one of hyper's automatic error answers.
fn automatic_error(head: &[u8]) -> Option<StatusCode> {
    // Checked on every write of every answer: a byte compare, no allocation.
    let (_, status) = [
        (&b"HTTP/1.1 400 "[..], StatusCode::BAD_REQUEST),
        (&b"HTTP/1.1 414 "[..], StatusCode::URI_TOO_LONG),
        (
            &b"HTTP/1.1 431 "[..],
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ),
    ]
    .into_iter()
    .find(|(prefix, _)| head.starts_with(prefix))?;
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
    let empty = head.lines().any(|line| line.trim() == "content-length: 0");
    let typed = head.lines().any(|line| line.starts_with("content-type:"));
    (empty && !typed).then_some(status)
}

/// The eHealth answer for `status`, as bytes on the wire; the connection closes after it.
fn replacement(status: StatusCode, base_url: &str) -> Vec<u8> {
    let message = match status {
        StatusCode::URI_TOO_LONG => "The request URI is too long",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "The request headers are too large",
        _ => "The request could not be parsed as HTTP",
    };
    let body = json!({
        "meta": {
            "code": status.as_u16(),
            "url": base_url,
            "type": "object",
            "request_id": Uuid::new_v4().to_string(),
        },
        "error": error_body(status.as_u16(), message, &[]),
    })
    .to_string();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default(),
        body.len(),
    )
    .into_bytes()
}

impl<T: AsyncRead + Unpin> AsyncRead for ShapedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ShapedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacement.is_none() {
            match automatic_error(buf) {
                Some(status) => this.replacement = Some((replacement(status, &this.base_url), 0)),
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        if let Some((bytes, written)) = this.replacement.as_mut() {
            while *written < bytes.len() {
                match Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => *written += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
        }
        // hyper's head (and anything after it on this closing connection) counts as written.
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bare_error_heads_are_replaced() {
        let hyper = b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(automatic_error(hyper), Some(StatusCode::URI_TOO_LONG));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_error(ours), None);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_error(ok), None);
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 10\r\n\r\n";
        assert_eq!(automatic_error(with_body), None);
    }

    #[test]
    fn the_replacement_is_an_ehealth_error_with_its_length() {
        let bytes = replacement(StatusCode::URI_TOO_LONG, "http://x");
        let text = String::from_utf8(bytes).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert_eq!(body["error"]["type"], "request_uri_too_long");
        assert_eq!(body["meta"]["code"], 414);
    }
}
