use std::sync::Arc;
use std::time::Duration;

use bench_suite::data::lorem;
use bench_suite::service::*;

macro_rules! store_workloads {
    ($($name:ident: $keys:expr;)*) => {$(
        #[tokio::test]
        #[cfg_attr(feature = "checked", leakcheck::leakcheck)]
        async fn $name() {
            let (store, task) = Store::spawn(64);
            for i in 0..$keys {
                assert_eq!(store.put(format!("user/{i:05}"), lorem(i, 6).into_bytes()).await, None);
            }
            for i in (0..$keys).step_by(3) {
                assert_eq!(store.get(format!("user/{i:05}")).await, Some(lorem(i, 6).into_bytes()));
            }
            assert_eq!(store.scan("user/").await.len(), $keys as usize);
            drop(store);
            assert!(task.await.unwrap() as u64 > $keys);
        }
    )*};
}

store_workloads! {
    store_with_100_keys: 100u64;
    store_with_300_keys: 300u64;
    store_with_600_keys: 600u64;
    store_with_1000_keys: 1000u64;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
async fn store_shared_by_concurrent_clients() {
    let (store, task) = Store::spawn(32);
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..80u64 {
                    store.put(format!("c{c}/{i}"), vec![c as u8; 64]).await;
                }
                store.scan(format!("c{c}/")).await.len()
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.await.unwrap(), 80);
    }
    drop(store);
    assert_eq!(task.await.unwrap(), 8 * 81);
}

#[tokio::test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
async fn deletes_and_scans() {
    let (store, task) = Store::spawn(16);
    for i in 0..500u64 {
        store
            .put(
                format!("{}/{i}", if i % 2 == 0 { "even" } else { "odd" }),
                vec![0; 32],
            )
            .await;
    }
    for i in (0..500u64).step_by(2) {
        assert!(store.delete(format!("even/{i}")).await);
    }
    assert!(store.scan("even/").await.is_empty());
    assert_eq!(store.scan("odd/").await.len(), 250);
    drop(store);
    task.await.unwrap();
}

#[tokio::test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
async fn cache_computes_each_key_once() {
    let cache = Cache::default();
    for round in 0..4 {
        for k in 0..200u64 {
            let v = cache
                .get_or_compute(&format!("k{k}"), || lorem(k, 10))
                .await;
            assert_eq!(*v, lorem(k, 10), "round {round}");
        }
    }
    assert_eq!(cache.len().await, 200);
    assert_eq!(cache.misses().await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
async fn cache_shared_across_tasks() {
    let cache = Cache::default();
    let tasks: Vec<_> = (0..6)
        .map(|t| {
            let cache = cache.clone();
            tokio::spawn(async move {
                let mut total = 0;
                for k in 0..150u64 {
                    total += cache
                        .get_or_compute(&format!("k{}", (k + t) % 150), || lorem(k, 8))
                        .await
                        .len();
                }
                total
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap() > 0);
    }
    assert_eq!(cache.len().await, 150);
}

macro_rules! fan_outs {
    ($($name:ident: $jobs:expr, $workers:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr(feature = "checked", leakcheck::leakcheck)]
        async fn $name() {
            let jobs: Vec<String> = (0..$jobs).map(|i| lorem(i, 20)).collect();
            let results = fan_out(jobs.clone(), $workers, |s| bench_suite::text::slugify(s)).await;
            assert_eq!(results.len(), jobs.len());
            for (job, result) in jobs.iter().zip(&results) {
                assert_eq!(result, &bench_suite::text::slugify(job));
            }
        }
    )*};
}

fan_outs! {
    fan_out_200_jobs_to_2_workers: 200u64, 2;
    fan_out_400_jobs_to_4_workers: 400u64, 4;
    fan_out_600_jobs_to_8_workers: 600u64, 8;
}

#[tokio::test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
async fn join_many_spawned_tasks() {
    let handles: Vec<_> = (0..300u64)
        .map(|i| tokio::spawn(async move { bench_suite::model::random_orders(i, 2) }))
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap().len();
    }
    assert_eq!(total, 600);
}

#[tokio::test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
async fn pipeline_over_channels() {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(8);
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<usize>(8);
    let stage = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            out_tx
                .send(bench_suite::text::word_frequencies(&line).len())
                .await
                .unwrap();
        }
    });
    let producer = tokio::spawn(async move {
        for i in 0..400 {
            tx.send(lorem(i, 25)).await.unwrap();
        }
    });
    let mut n = 0;
    while let Some(count) = out_rx.recv().await {
        assert!(count > 0);
        n += 1;
    }
    producer.await.unwrap();
    stage.await.unwrap();
    assert_eq!(n, 400);
}

#[tokio::test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
async fn timeouts_and_select() {
    let shared = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    for i in 0..200u64 {
        let work = async {
            shared.lock().await.push(lorem(i, 5));
            i
        };
        let got = tokio::time::timeout(Duration::from_secs(5), work)
            .await
            .unwrap();
        assert_eq!(got, i);
        tokio::select! {
            biased;
            v = async { lorem(i, 3) } => assert!(!v.is_empty()),
            _ = tokio::time::sleep(Duration::from_secs(5)) => unreachable!(),
        }
    }
    assert_eq!(shared.lock().await.len(), 200);
}

#[tokio::test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
async fn broadcast_to_subscribers() {
    let (tx, _) = tokio::sync::broadcast::channel::<Arc<String>>(512);
    let subscribers: Vec<_> = (0..5)
        .map(|_| {
            let mut rx = tx.subscribe();
            tokio::spawn(async move {
                let mut bytes = 0;
                while let Ok(msg) = rx.recv().await {
                    bytes += msg.len();
                }
                bytes
            })
        })
        .collect();
    let mut sent = 0;
    for i in 0..400 {
        let msg = Arc::new(lorem(i, 8));
        sent += msg.len();
        tx.send(msg).unwrap();
    }
    drop(tx);
    for s in subscribers {
        assert_eq!(s.await.unwrap(), sent);
    }
}
