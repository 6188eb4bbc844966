//! Listing and filtering 1,000 pool entries from metadata: an HF cache holding 1,000 adapter repos
//! (configs and model cards, no weights), listed with the `cache` source, filtered and sorted; and
//! the same 1,000 served by a local stand-in Hub (10 pages of 100) with their configs already in
//! the cache. Peak memory is the process's VmHWM.
//!
//! The configs come from a snapshot of the real Llama-3.1-8B-Instruct pool's metadata when one is
//! given (`--snapshot FILE`, a JSON object repo id → {r, lora_alpha, target_modules}), else they
//! are generated with that pool's rank spread.
//!
//! cargo bench --bench pool -- [--iters N] [--snapshot FILE]

use std::io::Cursor;
use std::sync::Arc;

use serde_json::{Value, json};

use loracycle::pool::PoolSource;
use loracycle::pool::cache::MetaCache;
use loracycle::pool::entry::{ListOptions, SortKey, list_entries, sort};

use loracycle::bench::support::time_ms;

/// `cargo bench --bench pool -- [--iters N] [--snapshot FILE]`.
#[derive(clap::Parser)]
struct Args {
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// A pool snapshot (JSON) to list instead of the shipped one.
    #[arg(long)]
    snapshot: Option<String>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BASE: &str = "meta-llama/Llama-3.1-8B-Instruct";
const N: usize = 1000;

fn configs(snapshot: Option<&str>) -> (Vec<(String, Value)>, &'static str) {
    if let Some(text) = snapshot.and_then(|p| std::fs::read_to_string(p).ok()) {
        let map: serde_json::Map<String, Value> =
            serde_json::from_str(&text).expect("snapshot JSON");
        let mut v: Vec<(String, Value)> = map.into_iter().collect();
        let real = v.len();
        for i in 0..N.saturating_sub(real) {
            let (_, c) = v[i % real].clone();
            v.push((format!("synthetic{i}/lora-{i}"), c));
        }
        v.truncate(N);
        return (v, "the real pool's metadata snapshot (topped up to 1,000)");
    }
    let ranks = [16, 8, 64, 32, 256, 128];
    let weights = [285, 274, 199, 136, 29, 24];
    let total: usize = weights.iter().sum();
    let v = (0..N)
        .map(|i| {
            let mut t = (i * 7919) % total;
            let mut r = ranks[0];
            for (rk, w) in ranks.iter().zip(weights) {
                if t < w {
                    r = *rk;
                    break;
                }
                t -= w;
            }
            let modules = if i % 4 == 0 {
                json!(["q_proj", "v_proj"])
            } else {
                json!([
                    "q_proj",
                    "k_proj",
                    "v_proj",
                    "o_proj",
                    "gate_proj",
                    "up_proj",
                    "down_proj"
                ])
            };
            (
                format!("user{i}/lora-{i}"),
                json!({"r": r, "lora_alpha": 2 * r, "target_modules": modules}),
            )
        })
        .collect();
    (v, "generated configs with the real pool's rank spread")
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    // SAFETY: first thing in main; no other thread has started.
    unsafe { loracycle::process::prepare() };
    println!("{}", loracycle::process::machine_line());
    let args = <Args as clap::Parser>::parse();
    let iters = args.iters.max(1);
    let snapshot = args.snapshot;
    let (cfgs, origin) = configs(snapshot.as_deref());
    let tmp = tempfile::tempdir().unwrap();
    let hub_dir = tmp.path().join("hf/hub");
    for (i, (id, c)) in cfgs.iter().enumerate() {
        let repo = hub_dir.join(format!("models--{}", id.replace('/', "--")));
        let rev = format!("{i:040x}");
        let snap = repo.join("snapshots").join(&rev);
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), &rev).unwrap();
        let mut c = c.clone();
        c["peft_type"] = json!("LORA");
        c["task_type"] = json!("CAUSAL_LM");
        c["base_model_name_or_path"] = json!(BASE);
        std::fs::write(
            snap.join("adapter_config.json"),
            serde_json::to_vec(&c).unwrap(),
        )
        .unwrap();
        std::fs::write(
            snap.join("README.md"),
            format!("---\nlicense: mit\n---\n# {id}\nA LoRA.\n"),
        )
        .unwrap();
    }
    // SAFETY of env changes: single-threaded here, before any listing runs.
    unsafe {
        std::env::set_var("HF_HOME", tmp.path().join("hf"));
        std::env::set_var("LORACYCLE_CACHE_DIR", tmp.path().join("meta"));
        std::env::remove_var("HF_HUB_CACHE");
    }
    let filter: loracycle::pool::Filter = "rank<=64,modules=all".parse().unwrap();
    let opts = ListOptions {
        base: Some(BASE),
        base_config: None,
        endpoint: None,
        offline: true,
        jobs: 8,
    };
    println!("pool: {N} adapters, {origin}, {iters} iters");
    let mut kept = 0;
    let (ms, min) = time_ms(iters, || {
        let mut meta = MetaCache::default();
        let entries =
            list_entries(&PoolSource::Cache, &opts, &mut meta, &mut |_, _, _| {}).unwrap();
        assert_eq!(entries.len(), N);
        let mut e: Vec<_> = entries.into_iter().filter(|e| e.matches(&filter)).collect();
        sort(&mut e, SortKey::Rank);
        kept = e.len();
    });
    println!(
        "  cache source: list + filter + sort      median {ms:7.1} ms (min {min:7.1}), {kept} kept"
    );
    println!(
        "{}",
        json!({"case": "cache", "median_ms": ms, "min_ms": min, "kept": kept})
    );

    // The same pool from a stand-in Hub: listing pages over HTTP, configs from the cache.
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let url = format!(
        "http://127.0.0.1:{}",
        server.server_addr().to_ip().unwrap().port()
    );
    let models: Vec<Value> = cfgs
        .iter()
        .enumerate()
        .map(|(i, (id, _))| {
            json!({"id": id, "sha": format!("{i:040x}"), "downloads": (N - i) as u64 * 13, "likes": i % 50,
                   "lastModified": "2026-10-01T00:00:00.000Z", "tags": ["peft", "lora"],
                   "siblings": [{"rfilename": "adapter_config.json"}, {"rfilename": "README.md"}, {"rfilename": "adapter_model.safetensors"}]})
        })
        .collect();
    let page_url = url.clone();
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let cursor: usize = req
                .url()
                .split("cursor=")
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let page = &models[cursor..(cursor + 100).min(models.len())];
            let body = serde_json::to_vec(page).unwrap();
            let mut headers = vec![];
            if cursor + 100 < models.len() {
                headers.push(
                    tiny_http::Header::from_bytes(
                        &b"Link"[..],
                        format!(
                            "<{page_url}/api/models?cursor={}>; rel=\"next\"",
                            cursor + 100
                        )
                        .as_bytes(),
                    )
                    .unwrap(),
                );
            }
            let len = body.len();
            let _ = req.respond(tiny_http::Response::new(
                200.into(),
                headers,
                Cursor::new(body),
                Some(len),
                None,
            ));
        }
    });
    let hub_opts = ListOptions {
        endpoint: Some(&url),
        offline: false,
        ..opts
    };
    let (ms, min) = time_ms(iters, || {
        let mut meta = MetaCache::default();
        let entries =
            list_entries(&PoolSource::Hub, &hub_opts, &mut meta, &mut |_, _, _| {}).unwrap();
        assert_eq!(entries.len(), N);
        let mut e: Vec<_> = entries.into_iter().filter(|e| e.matches(&filter)).collect();
        sort(&mut e, SortKey::Downloads);
        kept = e.len();
    });
    println!(
        "  hub source (10 pages, cached configs)   median {ms:7.1} ms (min {min:7.1}), {kept} kept"
    );
    println!(
        "{}",
        json!({"case": "hub", "median_ms": ms, "min_ms": min, "kept": kept})
    );
    println!(
        "  peak resident memory of the whole benchmark: {:.1} MB",
        peak_rss_mb()
    );
}
