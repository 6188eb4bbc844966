//! `loracycle lab build`: the lab build with a progress bar and the MANIFEST.

use loracycle::model::OpenDevice;
use std::path::PathBuf;

use anyhow::Result;

use loracycle::model::DevicePref;

/// `loracycle lab where`: the lab folder in use and how it was found.
pub fn lab_where() -> Result<()> {
    let found = loracycle::lab::locate::found()?;
    println!("{}", found.dir.display());
    eprintln!("({})", found.origin.describe());
    Ok(())
}

pub fn lab_build(
    quick: bool,
    out: Option<PathBuf>,
    seed: u64,
    device: DevicePref,
    jobs: Option<usize>,
) -> Result<()> {
    use loracycle::lab::build::{BuildEvent, build};
    use loracycle::lab::manifest::{Stopwatch, write_manifest};
    use loracycle::lab::recipe::LabRecipe;
    let out = match out.or_else(|| std::env::var_os("LORACYCLE_LAB").map(PathBuf::from)) {
        Some(out) => out,
        None => anyhow::bail!(
            "--out DIR is needed: no LORACYCLE_LAB is set (a checkout's cargo sets it to assets/lab)"
        ),
    };
    let device = device.open()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = jobs.unwrap_or(if device.is_cpu() { cores } else { 1 });
    if jobs > 1 && device.is_cpu() && !loracycle::process::threads_set_by_user() {
        // One thread per job: the lab's matrices are too small for candle to gain from splitting
        // an op over cores, and the spinning workers would steal time from the other jobs.
        // SAFETY: no other thread has started yet.
        unsafe { loracycle::process::set_threads(1) };
    }
    let watch = Stopwatch::start();
    let style = indicatif::ProgressStyle::with_template(
        "  [{bar:30}] {pos}/{len} {elapsed_precise} ETA {eta_precise} {msg}",
    )
    .expect("static template")
    .progress_chars("=> ");
    let mut bar = indicatif::ProgressBar::hidden();
    let recipe = LabRecipe { quick, seed };
    let card = build(&out, &recipe, &device, jobs, &mut |ev| match ev {
        BuildEvent::Stage(name) => {
            bar.finish_and_clear();
            eprintln!("{name}");
            bar = indicatif::ProgressBar::new(0).with_style(style.clone());
        }
        BuildEvent::Progress {
            done,
            total,
            message,
        } => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message(message);
        }
        BuildEvent::Note(text) => bar.println(format!("  {text}")),
    })?;
    bar.finish_and_clear();
    let mut command = format!("loracycle lab build --seed {seed} --out {}", out.display());
    if quick {
        command.push_str(" --quick");
    }
    write_manifest(&out, &command, watch.seconds())?;
    eprintln!(
        "lab built in {:.0} s: {} pool adapters ({} dropped), {} oracle adapters, {} held-out tasks → {}",
        watch.seconds(),
        card.pool.len(),
        card.dropped.len(),
        card.oracle.len(),
        card.held_out.len(),
        out.display()
    );
    Ok(())
}
