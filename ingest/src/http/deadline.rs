//! A request body that must arrive completely within a deadline, on every
//! listener: a sender that stalls mid-body gets an error where the body is
//! read (408 where the handler says so), so that no request holds its
//! connection and its memory for longer than the body timeout. A body
//! dropped before its end (a refusal decided before or while it was read)
//! is read on and dropped in a task of its own, bounded, so that a sender
//! still writing reads the answer rather than a reset connection.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

/// The error a body gives when its deadline passes.
#[derive(Debug, thiserror::Error)]
#[error("the body did not arrive within {} s", .0.as_secs())]
pub struct BodyDeadline(pub Duration);

/// `inner`, cut off `limit` after it was made; if dropped before its end,
/// up to `drain` more bytes of it are read and dropped, until the deadline.
pub struct TimedBody<B>
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
{
    inner: Option<B>,
    limit: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    drain: u64,
}

/// `body` within `limit`, as the body axum handlers take; up to `drain`
/// bytes of it read and dropped if it is dropped unfinished (0: none, for
/// a client that asked `Expect: 100-continue` and has sent nothing).
pub fn within<B>(body: B, limit: Duration, drain: u64) -> Body
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Body::new(TimedBody {
        inner: Some(body),
        limit,
        deadline: Box::pin(tokio::time::sleep(limit)),
        drain,
    })
}

/// Reads what is left of `body` and drops it, in a task of its own: at most
/// `limit` bytes, within `timeout`.
pub fn drain<B>(mut body: B, limit: u64, timeout: Duration)
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let drain = async {
            let mut seen = 0u64;
            while let Some(Ok(frame)) = http_body_util::BodyExt::frame(&mut body).await {
                seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                if seen > limit {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(timeout, drain).await;
    });
}

impl<B> Drop for TimedBody<B>
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
{
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        if self.drain == 0 || inner.is_end_stream() {
            return;
        }
        let left = self
            .deadline
            .deadline()
            .saturating_duration_since(tokio::time::Instant::now());
        drain(inner, self.drain, left);
    }
}

impl<B> HttpBody for TimedBody<B>
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(None) => {
                // Ended: nothing to drain.
                this.inner = None;
                Poll::Ready(None)
            }
            Poll::Ready(r) => Poll::Ready(r.map(|f| f.map_err(Into::into))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyDeadline(this.limit))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

/// Whether `e`, or an error under it, is a passed [`BodyDeadline`].
pub fn is_deadline(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<BodyDeadline>() {
            return true;
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_stalled_body_fails_at_its_deadline_and_a_prompt_one_arrives() {
        /// Sends one frame, then nothing ever.
        struct Stalls(bool);
        impl HttpBody for Stalls {
            type Data = Bytes;
            type Error = std::io::Error;
            fn poll_frame(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
                if std::mem::replace(&mut self.0, true) {
                    Poll::Pending
                } else {
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"start")))))
                }
            }
        }
        let body = within(Stalls(false), Duration::from_millis(100), 0);
        let e = body.collect().await.unwrap_err();
        assert!(is_deadline(&e), "{e}");

        let body = within(Body::from("whole"), Duration::from_millis(100), 0);
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"whole");
    }

    /// Ten bytes a frame, for ever, counting the frames read.
    struct Endless(Arc<AtomicUsize>);

    impl HttpBody for Endless {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"0123456789")))))
        }
    }

    #[tokio::test]
    async fn a_body_dropped_unfinished_is_drained_up_to_its_bound() {
        for (drain, read) in [(100, 1 + 11), (0, 1)] {
            let n = Arc::new(AtomicUsize::new(0));
            let mut body = within(Endless(n.clone()), Duration::from_secs(5), drain);
            body.frame().await.unwrap().unwrap();
            drop(body);
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(n.load(Ordering::SeqCst), read, "drain {drain}");
        }
    }
}
