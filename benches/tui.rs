//! Frame time of the terminal UI: each screen drawn at 200x60 on ratatui's `TestBackend` with a
//! 1,000-adapter pool and a run with a 10,000-step curve and 100 coefficient snapshots of 30
//! adapters × 224 groups; and the time to handle a key (move, search typing) on that state.
//!
//! `cargo bench --bench tui [-- --frames N]`

use std::time::Instant;

use loracycle::engine::{Event, RunId};

/// `cargo bench --bench tui -- [--frames N]`.
#[derive(clap::Parser)]
struct Args {
    #[arg(long, default_value_t = 200)]
    frames: usize,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}
use loracycle::pool::PoolSource;
use loracycle::pool::entry::{EntryStatus, PoolEntry};
use loracycle::ui::keymap::Keymap;
use loracycle::ui::theme::Theme;
use loracycle::ui::{App, Context, draw};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

fn pool(n: usize) -> Vec<PoolEntry> {
    (0..n)
        .map(|i| PoolEntry {
            id: format!("user{}/llama31-lora-{i:04}", i % 97),
            source: "hub".into(),
            revision: Some(format!("{i:040x}")),
            rank: Some([8, 16, 32, 64][i % 4]),
            alpha: Some(16.0),
            rslora: false,
            target_modules: vec!["q_proj".into(), "v_proj".into()],
            size_bytes: Some(1 << 24),
            base_model: Some("meta-llama/Llama-3.1-8B-Instruct".into()),
            downloads: Some((i * 37 % 1000) as u64),
            likes: Some((i % 13) as u64),
            last_modified: Some("2026-10-01T00:00:00Z".into()),
            tags: Vec::new(),
            card: Some(format!("A LoRA for task {i} trained on instructions.")),
            status: EntryStatus::Usable,
            norm: Some(i as f64 / 10.0),
            path: None,
            verdicts: Vec::new(),
        })
        .collect()
}

fn state() -> App {
    let mut app = App::new(
        Theme::built_in("dark").unwrap(),
        Keymap::default(),
        Context {
            model: "lab".into(),
            source: PoolSource::Lab,
            device: "cpu".into(),
        },
        vec!["caesar-5".into()],
    );
    app.set_pool(pool(1000));
    let run = RunId("bench-run".into());
    app.on_engine(Event::Started {
        run: run.clone(),
        label: "caesar-5 / gradient".into(),
    });
    let columns: Vec<String> = (0..30).map(|j| format!("adapter-{j}")).collect();
    let groups: Vec<String> = (0..32)
        .flat_map(|l| {
            [
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
            ]
            .map(|m| format!("layer {l} {m}"))
        })
        .collect();
    app.on_engine(Event::Layout {
        run: run.clone(),
        groups: groups.clone(),
        columns: columns.clone(),
    });
    app.on_engine(Event::Stage {
        run: run.clone(),
        name: "tuning coefficients".into(),
        total: 20_000,
    });
    for step in 1..=10_000usize {
        let s = step as f64;
        app.on_engine(Event::Progress {
            run: run.clone(),
            step,
            train_loss: 2.0 / (1.0 + s / 300.0) + 0.05 * (s * 0.37).sin(),
            val_loss: (step.is_multiple_of(100)).then(|| 2.1 / (1.0 + s / 320.0)),
            throughput: 3.0,
        });
        if step.is_multiple_of(100) {
            let values = (0..groups.len())
                .map(|g| {
                    (0..columns.len())
                        .map(|j| {
                            ((s / 1e4) * (j as f64 + 1.0) / 30.0 * (1.0 + g as f64 / 224.0)) as f32
                        })
                        .collect()
                })
                .collect();
            app.on_engine(Event::Coefficients {
                run: run.clone(),
                step,
                values,
            });
        }
    }
    app.live.run = 0;
    app
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    println!("{}", loracycle::process::machine_line());
    let frames = <Args as clap::Parser>::parse().frames.max(1);
    let mut app = state();
    let mut term = Terminal::new(TestBackend::new(200, 60)).unwrap();
    println!("frame at 200x60, 1,000 adapters, 10,000-step curve ({frames} frames, median / max):");
    for (key, name) in [
        ('1', "Pool"),
        ('2', "New run"),
        ('3', "Live"),
        ('4', "Runs"),
        ('5', "Compare"),
    ] {
        app.on_key(KeyEvent::new(KeyCode::Char(key), KeyModifiers::NONE));
        let mut times = Vec::with_capacity(frames);
        for i in 0..frames + 10 {
            if key == '1' {
                // Scroll while drawing, as a user holding j does.
                app.on_key(KeyEvent::new(KeyCode::Char('j'), KeyModifiers::NONE));
            }
            let t = Instant::now();
            term.draw(|f| draw(f, &app)).unwrap();
            if i >= 10 {
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        let max = times.iter().cloned().fold(0.0, f64::max);
        println!("  {name:<8} {:.3} ms / {max:.3} ms", median(times));
    }
    app.on_key(KeyEvent::new(KeyCode::Char('1'), KeyModifiers::NONE));
    let mut times = Vec::new();
    for _ in 0..frames {
        let t = Instant::now();
        app.on_key(KeyEvent::new(KeyCode::Char('j'), KeyModifiers::NONE));
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    println!("key j on Pool: {:.1} µs median", median(times));
    app.on_key(KeyEvent::new(KeyCode::Char('/'), KeyModifiers::NONE));
    let mut times = Vec::new();
    for c in "lora-0".chars().cycle().take(frames) {
        let t = Instant::now();
        app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
        times.push(t.elapsed().as_secs_f64() * 1e6);
        app.on_key(KeyEvent::new(KeyCode::Backspace, KeyModifiers::NONE));
    }
    println!(
        "a search character over 1,000 adapters: {:.1} µs median",
        median(times)
    );
}
