//! The one writer thread. Commands queue on a channel; the writer takes one, drains whatever
//! else is already waiting (up to `MAX_BATCH`), runs them all in one transaction with a
//! savepoint each, commits once — one fsync for the lot — and only then replies to each.

use crate::error::DbResult;
use rusqlite::Connection;
use sessiond_store::{StoreError, StoreResult};
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::thread;
use tokio::sync::oneshot;

/// The most commands one transaction takes.
const MAX_BATCH: usize = 64;

pub(crate) struct Writer {
    commands: mpsc::Sender<Box<dyn Command>>,
}

/// One queued write.
trait Command: Send {
    /// Runs the command inside its savepoint; false if it failed and must be rolled back.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Sends the command's result, or `batch_failure` if its transaction did not commit.
    fn reply(self: Box<Self>, batch_failure: Option<&str>);
}

struct Call<T, F> {
    work: Option<F>,
    result: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Command for Call<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> DbResult<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = match self.work.take() {
            Some(work) => match catch_unwind(AssertUnwindSafe(|| work(conn))) {
                Ok(result) => result.map_err(StoreError::from),
                Err(_) => Err(StoreError::Backend("store command panicked".into())),
            },
            None => Err(StoreError::Backend("store command ran twice".into())),
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn reply(self: Box<Self>, batch_failure: Option<&str>) {
        let result = match (batch_failure, self.result) {
            (Some(failure), _) => Err(StoreError::Backend(failure.to_owned())),
            (None, Some(result)) => result,
            (None, None) => Err(StoreError::Backend("store command did not run".into())),
        };
        // The caller may have gone away; the write stands all the same.
        let _ = self.reply.send(result);
    }
}

impl Writer {
    /// Starts the writer thread on `conn`. After every committed batch, and before its
    /// commands hear their answers, `on_commit` runs on the thread with the connection and
    /// the size of the batch.
    pub(crate) fn spawn(
        conn: Connection,
        on_commit: impl FnMut(&Connection, usize) + Send + 'static,
    ) -> io::Result<Self> {
        let (commands, queue) = mpsc::channel();
        thread::Builder::new()
            .name("sessiond-sqlite-writer".into())
            .spawn(move || serve(&conn, &queue, on_commit))?;
        Ok(Self { commands })
    }

    /// Runs `work` atomically in the writer's next transaction; resolves once it is durable.
    pub(crate) async fn call<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DbResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let call = Call {
            work: Some(work),
            result: None,
            reply,
        };
        let started = std::time::Instant::now();
        self.commands
            .send(Box::new(call))
            .map_err(|_| writer_gone())?;
        let result = answer.await.map_err(|_| writer_gone())?;
        // Queueing, the group's transaction and its fsync: what a caller waits for.
        metrics::histogram!("sessiond_store_seconds", "store" => "sqlite", "op" => "write")
            .record(started.elapsed().as_secs_f64());
        result
    }
}

fn writer_gone() -> StoreError {
    StoreError::Backend("the sqlite writer thread has stopped".into())
}

/// Serves batches until every sender is gone.
fn serve(
    conn: &Connection,
    queue: &mpsc::Receiver<Box<dyn Command>>,
    mut on_commit: impl FnMut(&Connection, usize),
) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        match run_batch(conn, &mut batch) {
            Ok(()) => {
                on_commit(conn, batch.len());
                for command in batch {
                    command.reply(None);
                }
            }
            Err(failure) => {
                let failure = format!("sqlite: {failure}");
                for command in batch {
                    command.reply(Some(&failure));
                }
            }
        }
    }
}

/// Runs the batch in one transaction and commits it; on error nothing of it is kept.
fn run_batch(conn: &Connection, batch: &mut [Box<dyn Command>]) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = run_commands(conn, batch).and_then(|()| conn.execute_batch("COMMIT"));
    if result.is_err() && !conn.is_autocommit() {
        // Best effort: the error worth reporting is the one that got us here.
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

/// Runs each command in its own savepoint, so a failing one undoes only itself.
fn run_commands(conn: &Connection, batch: &mut [Box<dyn Command>]) -> rusqlite::Result<()> {
    for command in batch {
        conn.execute_batch("SAVEPOINT command")?;
        let ok = command.run(conn);
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (an I/O error, a full disk): every
            // command before this one is lost with it.
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                Some("the transaction was rolled back".into()),
            ));
        }
        if ok {
            conn.execute_batch("RELEASE command")?;
        } else {
            conn.execute_batch("ROLLBACK TO command; RELEASE command")?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::error::DbError;
    use std::sync::{Arc, Mutex};

    fn open(dir: &tempfile::TempDir) -> Connection {
        let conn = Connection::open(dir.path().join("w.db")).unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER PRIMARY KEY)")
            .unwrap();
        conn
    }

    fn insert(v: i64) -> impl FnOnce(&Connection) -> DbResult<()> + Send + 'static {
        move |c| {
            c.execute("INSERT INTO t (v) VALUES (?1)", [v])?;
            Ok(())
        }
    }

    fn values(dir: &tempfile::TempDir) -> Vec<i64> {
        let c = Connection::open(dir.path().join("w.db")).unwrap();
        let mut stmt = c.prepare("SELECT v FROM t ORDER BY v").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Queues `work` at once, without awaiting: the order of the queue is the order of calls.
    fn queue<T, F>(writer: &Writer, work: F) -> oneshot::Receiver<StoreResult<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DbResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let call = Call {
            work: Some(work),
            result: None,
            reply,
        };
        writer.commands.send(Box::new(call)).unwrap();
        answer
    }

    /// Queues a command that holds the writer until `release` is sent, and returns once the
    /// writer runs it: its batch is then closed, and what is queued next lands after it.
    async fn hold(writer: &Writer) -> (mpsc::Sender<()>, oneshot::Receiver<StoreResult<()>>) {
        let (release, held) = mpsc::channel::<()>();
        let (started, running) = oneshot::channel::<()>();
        let answer = queue(writer, move |_: &Connection| {
            started.send(()).ok();
            held.recv().ok();
            Ok(())
        });
        running.await.unwrap();
        (release, answer)
    }

    #[tokio::test]
    async fn queued_commands_share_one_commit_each_batch() {
        let dir = tempfile::tempdir().unwrap();
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = batches.clone();
        let writer = Writer::spawn(open(&dir), move |_, n| seen.lock().unwrap().push(n)).unwrap();
        let (release, held) = hold(&writer).await;
        let answers: Vec<_> = (0..200).map(|v| queue(&writer, insert(v))).collect();
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        for answer in answers {
            answer.await.unwrap().unwrap();
        }
        assert_eq!(values(&dir), (0..200).collect::<Vec<_>>());
        let batches = batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), 201);
        assert!(batches.iter().all(|&n| n <= MAX_BATCH));
        assert_eq!(
            batches,
            vec![1, 64, 64, 64, 8],
            "200 queued writes, four commits"
        );
    }

    #[tokio::test]
    async fn a_failing_command_rolls_back_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = batches.clone();
        let writer = Writer::spawn(open(&dir), move |_, n| seen.lock().unwrap().push(n)).unwrap();
        let (release, held) = hold(&writer).await;
        let ok1 = queue(&writer, insert(1));
        let failing = queue(&writer, |c: &Connection| -> DbResult<()> {
            c.execute("INSERT INTO t (v) VALUES (2)", [])?;
            Err(DbError::Store(StoreError::LimitReached))
        });
        let duplicate = queue(&writer, insert(1));
        let ok3 = queue(&writer, insert(3));
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        ok1.await.unwrap().unwrap();
        assert!(matches!(
            failing.await.unwrap(),
            Err(StoreError::LimitReached)
        ));
        assert!(matches!(
            duplicate.await.unwrap(),
            Err(StoreError::Conflict)
        ));
        ok3.await.unwrap().unwrap();
        assert_eq!(values(&dir), vec![1, 3]);
        let batches = batches.lock().unwrap().clone();
        assert_eq!(batches, vec![1, 4], "the four shared one transaction");
    }

    #[tokio::test]
    async fn a_panicking_command_fails_alone_and_the_writer_lives_on() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Writer::spawn(open(&dir), |_, _| {}).unwrap();
        let panicked = writer
            .call(|c: &Connection| -> DbResult<()> {
                c.execute("INSERT INTO t (v) VALUES (7)", [])?;
                panic!("a bug in a command");
            })
            .await;
        assert!(matches!(panicked, Err(StoreError::Backend(_))));
        writer.call(insert(8)).await.unwrap();
        assert_eq!(values(&dir), vec![8]);
    }
}
