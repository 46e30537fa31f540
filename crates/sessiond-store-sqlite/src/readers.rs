//! A few reader threads, each with its own read-only connection, taking reads from one queue.
//! In WAL mode they read beside the writer without blocking it, each from the last commit.

use crate::error::DbResult;
use rusqlite::Connection;
use sessiond_store::{StoreError, StoreResult};
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use tokio::sync::oneshot;

type Read = Box<dyn FnOnce(&Connection) + Send>;

pub(crate) struct Readers {
    reads: mpsc::Sender<Read>,
}

impl Readers {
    /// One thread per connection.
    pub(crate) fn spawn(conns: Vec<Connection>) -> io::Result<Self> {
        let (reads, queue) = mpsc::channel::<Read>();
        let queue = Arc::new(Mutex::new(queue));
        for (i, conn) in conns.into_iter().enumerate() {
            let queue = queue.clone();
            thread::Builder::new()
                .name(format!("sessiond-sqlite-reader-{i}"))
                .spawn(move || serve(&conn, &queue))?;
        }
        Ok(Self { reads })
    }

    /// Runs `read` on the next free reader.
    pub(crate) async fn call<T, F>(&self, read: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DbResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Read = Box::new(move |conn| {
            let result = match catch_unwind(AssertUnwindSafe(|| read(conn))) {
                Ok(result) => result.map_err(StoreError::from),
                Err(_) => Err(StoreError::Backend("store read panicked".into())),
            };
            let _ = reply.send(result);
        });
        let started = std::time::Instant::now();
        self.reads.send(job).map_err(|_| readers_gone())?;
        let result = answer.await.map_err(|_| readers_gone())?;
        metrics::histogram!("sessiond_store_seconds", "store" => "sqlite", "op" => "read")
            .record(started.elapsed().as_secs_f64());
        result
    }
}

fn readers_gone() -> StoreError {
    StoreError::Backend("the sqlite reader threads have stopped".into())
}

/// Serves reads until every sender is gone.
fn serve(conn: &Connection, queue: &Mutex<mpsc::Receiver<Read>>) {
    loop {
        let read = match queue.lock() {
            Ok(queue) => match queue.recv() {
                Ok(read) => read,
                Err(_) => return,
            },
            Err(_) => return,
        };
        read(conn);
    }
}
