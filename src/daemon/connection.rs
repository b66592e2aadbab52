//! One client connection: framing, in-order replies, events, and noticing
//! when the peer has gone.
//!
//! Two halves share one task per connection:
//! * the **reader** splits the byte stream into lines (1 MiB cap), answers
//!   the inline methods at once and spawns one handler task for each other
//!   request, so later requests may start early;
//! * the **writer** owns the socket's write half: it writes reply slots
//!   strictly in arrival order (awaiting each handler in turn) and events
//!   (heartbeats, progress) as the lanes send them, gathering whatever is
//!   ready into one write.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::dispatch::{handle_request, quick_reply};
use super::scheduler::{ConnHandle, Outgoing};
use super::state::Ctx;
use super::wire::{self, Code, LaneState, Queue, WireError, MAX_LINE};

enum Frame {
    Line(Vec<u8>),
    TooLarge(Oversize),
    Eof,
}

/// Why a line was discarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Oversize {
    /// Longer than [`MAX_LINE`].
    Line,
    /// The daemon-wide budget for partial lines ran out.
    Budget,
}

/// Request slots a connection may have queued (read, not yet written).
/// When they are all taken the reader stops reading from that client until
/// it reads its replies: backpressure, with no reply dropped.
const MAX_QUEUED: usize = 128;

/// A daemon-wide allowance of bytes for partial request lines, so many
/// clients each holding a long unfinished line cannot exhaust memory.
pub(crate) struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Budget {
        Budget { used: AtomicUsize::new(0), limit }
    }

    fn try_take(&self, n: usize) -> bool {
        self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| (u + n <= self.limit).then_some(u + n)).is_ok()
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Bytes of a line each connection may hold without touching the shared
/// [`Budget`] (so ordinary requests never contend on it).
const UNCHARGED: usize = 64 * 1024;

/// One connection's share of the [`Budget`], returned when dropped.
struct Held<'a> {
    budget: &'a Budget,
    /// What this connection holds of the budget now.
    bytes: usize,
    /// The first bytes of a line that are not charged.
    free: usize,
}

impl<'a> Held<'a> {
    fn new(budget: &'a Budget) -> Held<'a> {
        Held { budget, bytes: 0, free: UNCHARGED }
    }

    /// Charges a line growing from `len` to `len + n` bytes.
    fn grow(&mut self, len: usize, n: usize) -> bool {
        let extra = (len + n).saturating_sub(self.free) - len.saturating_sub(self.free);
        extra == 0 || self.take(extra)
    }

    fn take(&mut self, n: usize) -> bool {
        let ok = self.budget.try_take(n);
        if ok {
            self.bytes += n;
        }
        ok
    }

    fn release(&mut self) {
        self.budget.give(std::mem::take(&mut self.bytes));
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// Reads one `\n`-terminated line of at most [`MAX_LINE`] bytes. A longer
/// line, or one the shared budget cannot hold, is discarded up to and
/// including its newline, and its buffer freed.
async fn read_frame<R: AsyncBufReadExt + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    held: &mut Held<'_>,
) -> std::io::Result<Frame> {
    buf.clear();
    let mut too_large = None;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            held.release();
            // EOF: a final unterminated line still counts as a request.
            return Ok(match too_large {
                Some(why) => Frame::TooLarge(why),
                None if buf.is_empty() => Frame::Eof,
                None => Frame::Line(std::mem::take(buf)),
            });
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (available.len(), false),
        };
        if too_large.is_none() {
            let why = if buf.len() + chunk > MAX_LINE {
                Some(Oversize::Line)
            } else if !held.grow(buf.len(), chunk) {
                Some(Oversize::Budget)
            } else {
                buf.extend_from_slice(&available[..chunk]);
                None
            };
            if why.is_some() {
                too_large = why;
                held.release();
                *buf = Vec::new();
            }
        }
        reader.consume(if done { chunk + 1 } else { chunk });
        if done {
            held.release();
            return Ok(match too_large {
                Some(why) => Frame::TooLarge(why),
                None => Frame::Line(std::mem::take(buf)),
            });
        }
    }
}

/// Answers a connection over the limit with one error line and closes it.
pub(crate) async fn refuse(mut stream: UnixStream) {
    let err = WireError::new(Code::InvalidRequest, "too many connections; try again later");
    let mut line = wire::reply_err(&Value::Null, &err);
    line.push('\n');
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(line.as_bytes())).await;
    let _ = stream.shutdown().await;
}

/// A reply slot in arrival order: ready now, or computed by a task.
enum Pending {
    Ready(Vec<Outgoing>),
    Task(Value, tokio::task::JoinHandle<Vec<Outgoing>>),
}

/// Serves one connection until the peer closes and every reply is written.
pub(crate) async fn serve_connection(stream: UnixStream, ctx: Arc<Ctx>) {
    let conn_id = ctx.next_conn_id();
    let fd = stream.as_raw_fd();
    let (rd, wr) = stream.into_split();
    let (out_tx, out_rx) = mpsc::unbounded_channel::<Outgoing>();
    let (seq_tx, seq_rx) = mpsc::channel::<Pending>(MAX_QUEUED);
    let gone = Arc::new(AtomicBool::new(false));
    let conn = ConnHandle { id: conn_id, gone: gone.clone(), events: out_tx.clone() };

    if ctx.config.heartbeat {
        let _ = out_tx.send(Outgoing::Heartbeat(Queue::Image, LaneState::Ready));
        let _ = out_tx.send(Outgoing::Heartbeat(Queue::Embed, LaneState::Ready));
    }
    // Reader and writer share this task: a reply handed from one to the
    // other wakes no second thread.
    // The reader goes first: a client that sent its request with the
    // connect gets the accept heartbeats and the reply in one write.
    let writer = write_loop(wr, out_rx, seq_rx, ctx.clone(), gone.clone());
    let reader = read_loop(rd, ctx.clone(), conn, out_tx, seq_tx, gone.clone());
    tokio::pin!(writer);
    tokio::select! {
        biased;
        _ = reader => {}
        _ = &mut writer => return,
    }
    // The peer stopped sending. It may still be reading (half-close), or be
    // gone entirely: watch for the hang-up while replies are pending, so the
    // render lane can drop its queued work.
    loop {
        // At once first: after a full close the hang-up is already there.
        if !gone.load(Ordering::Acquire) && peer_hung_up(fd) {
            gone.store(true, Ordering::Release);
        }
        tokio::select! {
            _ = &mut writer => return,
            _ = tokio::time::sleep(Duration::from_millis(20)), if !gone.load(Ordering::Acquire) => {}
        }
    }
}

/// Reads request lines until EOF, queueing each one's reply slot in
/// arrival order (inline methods answered at once, others by a task).
async fn read_loop(
    rd: tokio::net::unix::OwnedReadHalf,
    ctx: Arc<Ctx>,
    conn: ConnHandle,
    out_tx: mpsc::UnboundedSender<Outgoing>,
    seq_tx: mpsc::Sender<Pending>,
    gone: Arc<AtomicBool>,
) {
    let conn_id = conn.id;
    // Small, so a connection costs little to open; longer lines still
    // arrive whole (read_frame gathers them).
    let mut reader = BufReader::with_capacity(8 * 1024, rd);
    let mut buf = Vec::new();
    let mut held = Held::new(&ctx.line_budget);
    loop {
        let frame = match read_frame(&mut reader, &mut buf, &mut held).await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(conn = conn_id, error = %e, "read failed");
                gone.store(true, Ordering::Release);
                break;
            }
        };
        let pending = match frame {
            Frame::Eof => break,
            Frame::TooLarge(why) => {
                let err = match why {
                    Oversize::Line => WireError::new(Code::InvalidRequest, "request too large"),
                    Oversize::Budget => WireError::new(
                        Code::InvalidRequest,
                        "request too large for the daemon right now (too many long requests in flight); retry",
                    ),
                };
                Pending::Ready(vec![Outgoing::Line(wire::reply_err(&Value::String("unknown".into()), &err))])
            }
            Frame::Line(mut line) => {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match wire::parse_request(&line) {
                    Err((id, err)) => Pending::Ready(vec![Outgoing::Line(wire::reply_err(&id, &err))]),
                    Ok(req) => match quick_reply(&req, &ctx) {
                        Some(lines) => Pending::Ready(lines),
                        None => {
                            let arrival = ctx.next_arrival();
                            let id = req.id.clone();
                            Pending::Task(id, tokio::spawn(handle_request(req, ctx.clone(), conn.clone(), arrival)))
                        }
                    },
                }
            }
        };
        // Waits while the client leaves MAX_QUEUED replies unread.
        if seq_tx.send(pending).await.is_err() {
            break;
        }
    }
    drop(held);
    drop(seq_tx);
    drop(conn);
    drop(out_tx);
}

/// Owns the write half. Writes event lines as they come, and reply slots
/// strictly in arrival order (awaiting each task in turn). Ends when the
/// reader is done, every slot is written, and no lane holds the events
/// sender any more.
async fn write_loop(
    mut wr: tokio::net::unix::OwnedWriteHalf,
    mut events: mpsc::UnboundedReceiver<Outgoing>,
    mut slots: mpsc::Receiver<Pending>,
    ctx: Arc<Ctx>,
    gone: Arc<AtomicBool>,
) {
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let mut slots_open = true;
    let mut events_open = true;
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut broken = false;
    loop {
        // Everything that is ready goes into one buffer, written at once.
        while let Some(Pending::Ready(_)) = queue.front() {
            if let Some(Pending::Ready(lines)) = queue.pop_front() {
                render_lines(&ctx, lines, &mut out);
            }
        }
        if !out.is_empty() && !broken && wr.write_all(&out).await.is_err() {
            broken = true;
            gone.store(true, Ordering::Release);
        }
        if out.capacity() > 1024 * 1024 {
            // A burst is over: give the memory back.
            out = Vec::with_capacity(4096);
        } else {
            out.clear();
        }
        if !slots_open && queue.is_empty() && (!events_open || broken) {
            break;
        }
        if !slots_open && queue.is_empty() {
            // Only lane events can still arrive; they matter only while
            // replies are pending, so stop here.
            break;
        }
        tokio::select! {
            biased;
            ev = events.recv(), if events_open => match ev {
                Some(o) => {
                    render_lines(&ctx, vec![o], &mut out);
                    // Whatever else is ready leaves in the same write.
                    while let Ok(o) = events.try_recv() {
                        render_lines(&ctx, vec![o], &mut out);
                    }
                    take_ready_slots(&mut slots, &mut queue, &mut slots_open);
                }
                None => events_open = false,
            },
            slot = slots.recv(), if slots_open && queue.len() < MAX_QUEUED => match slot {
                Some(p) => {
                    queue.push_back(p);
                    take_ready_slots(&mut slots, &mut queue, &mut slots_open);
                }
                None => slots_open = false,
            },
            done = front_task(&mut queue), if matches!(queue.front(), Some(Pending::Task(..))) => {
                queue.pop_front();
                queue.push_front(Pending::Ready(done));
            }
        }
    }
    let _ = wr.shutdown().await;
}

/// Awaits the task at the front of the queue, turning a panic into the
/// `GENERATION_FAILED "internal error"` reply of Decision (e).
async fn front_task(queue: &mut std::collections::VecDeque<Pending>) -> Vec<Outgoing> {
    let Some(Pending::Task(id, handle)) = queue.front_mut() else { return Vec::new() };
    match handle.await {
        Ok(lines) => lines,
        Err(e) => {
            tracing::error!(error = %e, "request handler failed");
            let err = WireError::new(Code::GenerationFailed, format!("internal error: {e}"));
            vec![Outgoing::Line(wire::reply_err(id, &err))]
        }
    }
}

/// Moves the reply slots already sent into the queue (up to its bound),
/// without waiting.
fn take_ready_slots(slots: &mut mpsc::Receiver<Pending>, queue: &mut VecDeque<Pending>, open: &mut bool) {
    while *open && queue.len() < MAX_QUEUED {
        match slots.try_recv() {
            Ok(p) => queue.push_back(p),
            Err(mpsc::error::TryRecvError::Empty) => break,
            Err(mpsc::error::TryRecvError::Disconnected) => *open = false,
        }
    }
}

fn render_lines(ctx: &Ctx, lines: Vec<Outgoing>, out: &mut Vec<u8>) {
    for item in lines {
        match item {
            Outgoing::Line(l) => out.extend_from_slice(l.as_bytes()),
            Outgoing::Heartbeat(q, s) => {
                if !ctx.config.heartbeat {
                    continue;
                }
                out.extend_from_slice(ctx.heartbeat_line(q, s).as_bytes());
            }
        }
        out.push(b'\n');
    }
}

/// True when the peer has fully closed (POLLHUP), not just shut down its
/// write side.
fn peer_hung_up(fd: i32) -> bool {
    let mut pfd = libc::pollfd { fd, events: 0, revents: 0 };
    // SAFETY: `pfd` is a valid pollfd for the duration of the call, and the
    // descriptor stays open while this connection's task runs.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames_with(input: &[u8], budget: &Budget) -> Vec<String> {
        let mut r = BufReader::with_capacity(7, input);
        let mut buf = Vec::new();
        let mut held = Held { budget, bytes: 0, free: 0 };
        let mut out = Vec::new();
        loop {
            match read_frame(&mut r, &mut buf, &mut held).await.unwrap() {
                Frame::Eof => return out,
                Frame::TooLarge(Oversize::Line) => out.push("<too large>".into()),
                Frame::TooLarge(Oversize::Budget) => out.push("<over budget>".into()),
                Frame::Line(l) => out.push(String::from_utf8(l).unwrap()),
            }
            assert_eq!(held.bytes, 0, "nothing held between lines");
        }
    }

    async fn frames(input: &[u8]) -> Vec<String> {
        let budget = Budget::new(usize::MAX / 2);
        let out = frames_with(input, &budget).await;
        assert_eq!(budget.used.load(Ordering::Acquire), 0);
        out
    }

    #[tokio::test]
    async fn the_shared_budget_bounds_partial_lines() {
        let budget = Budget::new(100);
        // Another connection holds 90 bytes of an unfinished line.
        let mut other = Held { budget: &budget, bytes: 0, free: 0 };
        assert!(other.take(90));
        let mut input = vec![b'a'; 50];
        input.extend_from_slice(b"\nshort\n");
        assert_eq!(frames_with(&input, &budget).await, vec!["<over budget>", "short"]);
        drop(other);
        assert_eq!(budget.used.load(Ordering::Acquire), 0);
        assert_eq!(frames_with(&input, &budget).await.len(), 2);
        assert_eq!(frames_with(&input, &budget).await[0].len(), 50);
    }

    #[tokio::test]
    async fn framing() {
        assert_eq!(frames(b"a\nbb\n\nccc").await, vec!["a", "bb", "", "ccc"]);
        let mut big = vec![b'x'; MAX_LINE + 1];
        big.extend_from_slice(b"\nok\n");
        assert_eq!(frames(&big).await, vec!["<too large>", "ok"]);
        let mut exact = vec![b'y'; MAX_LINE];
        exact.push(b'\n');
        assert_eq!(frames(&exact).await.len(), 1);
        assert_eq!(frames(&exact).await[0].len(), MAX_LINE);
    }
}
