//! An async key-value service: an actor task that owns a map, driven over channels.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex, RwLock};

#[derive(Debug)]
pub enum Command {
    Put {
        key: String,
        value: Vec<u8>,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    Get {
        key: String,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    Delete {
        key: String,
        reply: oneshot::Sender<bool>,
    },
    Scan {
        prefix: String,
        reply: oneshot::Sender<Vec<(String, usize)>>,
    },
}

/// A handle to the store task; the task ends when every handle is dropped.
#[derive(Clone, Debug)]
pub struct Store {
    tx: mpsc::Sender<Command>,
}

impl Store {
    /// Spawns the actor on the current runtime.
    pub fn spawn(capacity: usize) -> (Store, tokio::task::JoinHandle<usize>) {
        let (tx, mut rx) = mpsc::channel::<Command>(capacity);
        let task = tokio::spawn(async move {
            let mut map: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            let mut handled = 0;
            while let Some(cmd) = rx.recv().await {
                handled += 1;
                match cmd {
                    Command::Put { key, value, reply } => {
                        let _ = reply.send(map.insert(key, value));
                    }
                    Command::Get { key, reply } => {
                        let _ = reply.send(map.get(&key).cloned());
                    }
                    Command::Delete { key, reply } => {
                        let _ = reply.send(map.remove(&key).is_some());
                    }
                    Command::Scan { prefix, reply } => {
                        let found = map
                            .range(prefix.clone()..)
                            .take_while(|(k, _)| k.starts_with(&prefix))
                            .map(|(k, v)| (k.clone(), v.len()))
                            .collect();
                        let _ = reply.send(found);
                    }
                }
            }
            handled
        });
        (Store { tx }, task)
    }

    pub async fn put(&self, key: impl Into<String>, value: Vec<u8>) -> Option<Vec<u8>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Put {
                key: key.into(),
                value,
                reply,
            })
            .await
            .expect("store running");
        rx.await.expect("store replied")
    }

    pub async fn get(&self, key: impl Into<String>) -> Option<Vec<u8>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Get {
                key: key.into(),
                reply,
            })
            .await
            .expect("store running");
        rx.await.expect("store replied")
    }

    pub async fn delete(&self, key: impl Into<String>) -> bool {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Delete {
                key: key.into(),
                reply,
            })
            .await
            .expect("store running");
        rx.await.expect("store replied")
    }

    pub async fn scan(&self, prefix: impl Into<String>) -> Vec<(String, usize)> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Scan {
                prefix: prefix.into(),
                reply,
            })
            .await
            .expect("store running");
        rx.await.expect("store replied")
    }
}

/// A shared in-memory cache behind an async `RwLock`.
#[derive(Clone, Default)]
pub struct Cache {
    inner: Arc<RwLock<HashMap<String, Arc<String>>>>,
    misses: Arc<Mutex<Vec<String>>>,
}

impl Cache {
    pub async fn get_or_compute(&self, key: &str, compute: impl FnOnce() -> String) -> Arc<String> {
        if let Some(v) = self.inner.read().await.get(key) {
            return Arc::clone(v);
        }
        self.misses.lock().await.push(key.to_string());
        let value = Arc::new(compute());
        self.inner
            .write()
            .await
            .entry(key.to_string())
            .or_insert(value)
            .clone()
    }

    pub async fn misses(&self) -> usize {
        self.misses.lock().await.len()
    }

    pub async fn len(&self) -> usize {
        self.inner.read().await.len()
    }

    pub async fn is_empty(&self) -> bool {
        self.inner.read().await.is_empty()
    }
}

/// Fans `jobs` out to `workers` tasks over a shared queue and collects the results in order.
pub async fn fan_out<F>(jobs: Vec<String>, workers: usize, work: F) -> Vec<String>
where
    F: Fn(&str) -> String + Send + Sync + 'static,
{
    let work = Arc::new(work);
    let queue = Arc::new(Mutex::new(jobs.into_iter().enumerate().collect::<Vec<_>>()));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut handles = Vec::new();
    for _ in 0..workers {
        let queue = Arc::clone(&queue);
        let tx = tx.clone();
        let work = Arc::clone(&work);
        handles.push(tokio::spawn(async move {
            loop {
                let job = queue.lock().await.pop();
                let Some((i, job)) = job else { break };
                tx.send((i, work(&job))).expect("collector alive");
                tokio::task::yield_now().await;
            }
        }));
    }
    drop(tx);
    let mut results = Vec::new();
    while let Some(r) = rx.recv().await {
        results.push(r);
    }
    for h in handles {
        h.await.expect("worker finished");
    }
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}
