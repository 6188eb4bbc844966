//! Slurm, the scheduler of the users' clusters: loracycle hands it work and reads its state, and
//! schedules nothing itself.
//!
//! - [`SlurmJob::from_env`]: the job a process runs in (sbatch's `SLURM_*` variables), stored with
//!   every run so that the run store ties a run to its array task.
//! - [`batch_script`]: an sbatch job-array script with one array task per RunSpec file.
//! - [`submit`]: `sbatch --parsable`, returning the job id.
//! - [`query`]: array task states from `squeue` (which keeps ended jobs for a few minutes with
//!   `--states=all`) and then `sacct` (when the cluster keeps accounting).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// The Slurm job a run executes in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SlurmJob {
    /// `SLURM_JOB_ID`: the job's own id (each array task has one).
    pub job_id: String,
    /// `SLURM_ARRAY_JOB_ID`, for an array task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_job_id: Option<String>,
    /// `SLURM_ARRAY_TASK_ID`, for an array task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_task_id: Option<u32>,
}

impl SlurmJob {
    /// The job this process runs in, if Slurm started it.
    pub fn from_env() -> Option<SlurmJob> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// The job described by `var` (a lookup of Slurm's environment variables).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Option<SlurmJob> {
        let plain = |k: &str| {
            var(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()))
        };
        let job_id = plain("SLURM_JOB_ID")?;
        Some(SlurmJob {
            job_id,
            array_job_id: plain("SLURM_ARRAY_JOB_ID"),
            array_task_id: plain("SLURM_ARRAY_TASK_ID").and_then(|t| t.parse().ok()),
        })
    }

    /// The id Slurm's tools print for this job: `ARRAY_TASK` for an array task, else the job id.
    pub fn key(&self) -> String {
        match (&self.array_job_id, self.array_task_id) {
            (Some(a), Some(t)) => format!("{a}_{t}"),
            _ => self.job_id.clone(),
        }
    }

    /// The id to ask `squeue`/`sacct` about: the array job for an array task.
    pub fn query_id(&self) -> &str {
        self.array_job_id.as_deref().unwrap_or(&self.job_id)
    }
}

/// What goes into an sbatch script besides the commands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOptions {
    pub job_name: String,
    pub partition: Option<String>,
    pub gpus_per_task: Option<u32>,
    pub cpus_per_task: Option<u32>,
    /// Slurm's time format (`MM`, `HH:MM:SS`, `D-HH`, ...).
    pub time: Option<String>,
    /// At most this many array tasks at once (`--array=0-N%M`).
    pub max_parallel: Option<u32>,
}

/// A word as one single-quoted shell word.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Checks a value that goes on an `#SBATCH` line: printable, no spaces or quotes.
fn directive_value(what: &str, v: &str) -> Result<(), String> {
    if v.is_empty()
        || !v
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '\'' | '"' | '\\' | '#' | '$' | '`'))
    {
        return Err(format!(
            "{what} {v:?} is not a plain Slurm value (letters, digits and - _ : . , only)"
        ));
    }
    Ok(())
}

/// Validates the options' values (they are written verbatim into `#SBATCH` lines).
pub fn check_options(o: &BatchOptions) -> Result<(), String> {
    // A 0 would be written as `%0` or `=0`: an array that never runs, or one sbatch refuses
    // only once submitted.
    for (flag, n) in [
        ("--max-parallel", o.max_parallel),
        ("--gpus-per-task", o.gpus_per_task),
        ("--cpus-per-task", o.cpus_per_task),
    ] {
        if n == Some(0) {
            return Err(format!("{flag} must be at least 1, got 0"));
        }
    }
    if let Some(p) = &o.partition {
        directive_value("--partition", p)?;
    }
    if let Some(t) = &o.time {
        directive_value("--time", t)?;
        if !t
            .chars()
            .all(|c| c.is_ascii_digit() || c == ':' || c == '-')
        {
            return Err(format!(
                "--time {t:?} is not a Slurm time (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS)"
            ));
        }
    }
    directive_value("the job name", &o.job_name)
}

/// An sbatch job-array script: array task `i` runs `loracycle run CELLS/NNNN.toml --runs-dir
/// RUNS`, with its output in `LOGS/cell-NNNN.JOB.log`. Paths are written absolute and quoted.
pub fn batch_script(
    o: &BatchOptions,
    cells: usize,
    exe: &Path,
    cells_dir: &Path,
    runs_dir: &Path,
    logs_dir: &Path,
) -> String {
    assert!(cells > 0, "an array of no tasks");
    let mut s = String::from("#!/bin/bash\n");
    s.push_str(
        "# Written by `loracycle study --emit slurm`: one array task per study cell, each a\n",
    );
    s.push_str("# headless `loracycle run` writing into the shared run store.\n");
    s.push_str(&format!("#SBATCH --job-name={}\n", o.job_name));
    let parallel = o.max_parallel.map(|m| format!("%{m}")).unwrap_or_default();
    s.push_str(&format!("#SBATCH --array=0-{}{parallel}\n", cells - 1));
    s.push_str("#SBATCH --ntasks=1\n");
    // %4a pads the array index like the cell files; %A is the array job id. Slurm takes a
    // double-quoted value here (the folder may hold spaces; `log_folder_ok` refused quotes).
    s.push_str(&format!(
        "#SBATCH --output=\"{}/cell-%4a.%A.log\"\n",
        logs_dir.display()
    ));
    if let Some(p) = &o.partition {
        s.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    if let Some(g) = o.gpus_per_task {
        s.push_str(&format!("#SBATCH --gpus-per-task={g}\n"));
    }
    if let Some(c) = o.cpus_per_task {
        s.push_str(&format!("#SBATCH --cpus-per-task={c}\n"));
    }
    if let Some(t) = &o.time {
        s.push_str(&format!("#SBATCH --time={t}\n"));
    }
    s.push_str("set -euo pipefail\n");
    s.push_str("cell=$(printf '%04d' \"$SLURM_ARRAY_TASK_ID\")\n");
    s.push_str("echo \"loracycle: cell $cell on $(hostname) as job ${SLURM_JOB_ID}\"\n");
    s.push_str(&format!(
        "exec {} run {}/\"$cell\".toml --runs-dir {}\n",
        shell_quote(&exe.display().to_string()),
        shell_quote(&cells_dir.display().to_string()),
        shell_quote(&runs_dir.display().to_string()),
    ));
    s
}

/// Whether a folder can go into an `#SBATCH --output` value: no quotes, newlines or `%` (Slurm
/// expands `%` patterns in it).
pub fn log_folder_ok(dir: &Path) -> Result<(), String> {
    let s = dir.display().to_string();
    if s.contains(['"', '\n', '\r', '%', '\\']) {
        return Err(format!(
            "{s:?}: Slurm cannot write logs into a folder whose path holds quotes, %, backslashes or newlines; choose another --out"
        ));
    }
    Ok(())
}

/// The file name of cell `i`'s spec.
pub fn cell_file(i: usize) -> String {
    format!("{i:04}.toml")
}

/// The logs of cell `i` in `logs`, newest first.
pub fn cell_logs(logs: &Path, i: usize) -> Vec<PathBuf> {
    let prefix = format!("cell-{i:04}.");
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(logs)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| {
                    let t = e
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH);
                    (t, e.path())
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    found.into_iter().map(|(_, p)| p).collect()
}

/// The last `n` lines of a text file (lossy UTF-8), reading at most its last 64 KiB.
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok((mut f, len)) = crate::untrusted::open(path, u64::MAX) else {
        return Vec::new();
    };
    let start = len.saturating_sub(64 * 1024);
    let mut bytes = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    // Progress bars redraw with carriage returns: keep each line's last state.
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.rsplit('\r').next().unwrap_or("").trim_end().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("cannot run {0}: {1} (is Slurm installed and on PATH?)")]
    Spawn(&'static str, std::io::Error),
    #[error("{0} failed: {1}")]
    Failed(&'static str, String),
}

/// Submits a batch script with `sbatch --parsable`; returns the job id.
pub fn submit(script: &Path) -> Result<String, SlurmError> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(script)
        .output()
        .map_err(|e| SlurmError::Spawn("sbatch", e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(SlurmError::Failed("sbatch", stderr.trim().to_string()));
    }
    // "JOBID" or "JOBID;CLUSTER".
    let id = stdout.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(SlurmError::Failed(
            "sbatch",
            format!("unexpected answer {:?}", stdout.trim()),
        ));
    }
    Ok(id)
}

/// Parses `JOBID|STATE` lines (squeue's `%i|%T`, sacct's `-P -o JobID,State`) into key → state.
/// Keys are as [`SlurmJob::key`] writes them; a pending array range (`12_[3-5]`) gives one key per
/// task; states are upper case without sacct's "by UID" suffix.
pub fn parse_states(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some((id, state)) = line.trim().split_once('|') else {
            continue;
        };
        let state = state
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        if id.is_empty() || state.is_empty() {
            continue;
        }
        match id.split_once("_[") {
            Some((array, range)) => {
                let range = range.trim_end_matches(']');
                let range = range.split('%').next().unwrap_or("");
                for part in range.split(',') {
                    let (a, b) = part.split_once('-').unwrap_or((part, part));
                    if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                        for t in a..=b.min(a.saturating_add(100_000)) {
                            out.entry(format!("{array}_{t}"))
                                .or_insert_with(|| state.clone());
                        }
                    }
                }
            }
            None => {
                out.insert(id.to_string(), state);
            }
        }
    }
    out
}

/// The states of the given jobs (query ids, see [`SlurmJob::query_id`]) by [`SlurmJob::key`]:
/// `squeue` first, then `sacct` for the ones it no longer lists. Slurm that is absent or fails
/// gives an empty map.
pub fn query(ids: &[&str]) -> HashMap<String, String> {
    let mut ids: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|i| !i.is_empty() && i.chars().all(|c| c.is_ascii_digit()))
        .collect();
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return HashMap::new();
    }
    let list = ids.join(",");
    let run = |cmd: &str, args: &[&str]| -> Option<String> {
        let out = Command::new(cmd).args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let mut states = run(
        "squeue",
        &[
            "--noheader",
            "--array",
            "--states=all",
            "--format=%i|%T",
            "--jobs",
            &list,
        ],
    )
    .map(|t| parse_states(&t))
    .unwrap_or_default();
    if let Some(t) = run(
        "sacct",
        &[
            "--noheader",
            "--parsable2",
            "--allocations",
            "--format=JobID,State",
            "--jobs",
            &list,
        ],
    ) {
        for (k, v) in parse_states(&t) {
            states.entry(k).or_insert(v);
        }
    }
    states
}

/// Whether a Slurm state means the job will not run (any more).
pub fn state_ended(state: &str) -> bool {
    !matches!(
        state,
        "PENDING"
            | "RUNNING"
            | "CONFIGURING"
            | "COMPLETING"
            | "REQUEUED"
            | "RESIZING"
            | "SUSPENDED"
            | "STOPPED"
            | "SIGNALING"
            | "STAGE_OUT"
            | "REQUEUE_HOLD"
            | "REQUEUE_FED"
            | "RESV_DEL_HOLD"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_from_environment() {
        let vars = |k: &str| match k {
            "SLURM_JOB_ID" => Some("812".to_string()),
            "SLURM_ARRAY_JOB_ID" => Some("800".to_string()),
            "SLURM_ARRAY_TASK_ID" => Some("12".to_string()),
            _ => None,
        };
        let j = SlurmJob::from_vars(vars).unwrap();
        assert_eq!(j.key(), "800_12");
        assert_eq!(j.query_id(), "800");
        let plain = SlurmJob::from_vars(|k| (k == "SLURM_JOB_ID").then(|| "5".into())).unwrap();
        assert_eq!((plain.key(), plain.query_id()), ("5".into(), "5"));
        assert_eq!(SlurmJob::from_vars(|_| None), None);
        // Not digits: not trusted as a job id.
        assert_eq!(
            SlurmJob::from_vars(|k| (k == "SLURM_JOB_ID").then(|| "5;rm".into())),
            None
        );
    }

    #[test]
    fn script_for_an_array() {
        let o = BatchOptions {
            job_name: "loracycle-study".into(),
            partition: Some("gpu".into()),
            gpus_per_task: Some(1),
            cpus_per_task: None,
            time: Some("02:00:00".into()),
            max_parallel: Some(8),
        };
        let s = batch_script(
            &o,
            28,
            Path::new("/opt/bin/loracycle"),
            Path::new("/shared/runs/study/cells"),
            Path::new("/shared/it's runs"),
            Path::new("/shared/runs/study/logs"),
        );
        assert_eq!(
            s,
            "#!/bin/bash\n\
# Written by `loracycle study --emit slurm`: one array task per study cell, each a\n\
# headless `loracycle run` writing into the shared run store.\n\
#SBATCH --job-name=loracycle-study\n\
#SBATCH --array=0-27%8\n\
#SBATCH --ntasks=1\n\
#SBATCH --output=\"/shared/runs/study/logs/cell-%4a.%A.log\"\n\
#SBATCH --partition=gpu\n\
#SBATCH --gpus-per-task=1\n\
#SBATCH --time=02:00:00\n\
set -euo pipefail\n\
cell=$(printf '%04d' \"$SLURM_ARRAY_TASK_ID\")\n\
echo \"loracycle: cell $cell on $(hostname) as job ${SLURM_JOB_ID}\"\n\
exec '/opt/bin/loracycle' run '/shared/runs/study/cells'/\"$cell\".toml --runs-dir '/shared/it'\\''s runs'\n"
        );
    }

    #[test]
    fn options_are_checked() {
        let mut o = BatchOptions {
            job_name: "x".into(),
            ..Default::default()
        };
        assert_eq!(check_options(&o), Ok(()));
        o.partition = Some("gpu\n#SBATCH --x".into());
        assert_eq!(
            check_options(&o).unwrap_err(),
            "--partition \"gpu\\n#SBATCH --x\" is not a plain Slurm value (letters, digits and - _ : . , only)"
        );
        o.partition = None;
        o.time = Some("2h".into());
        assert_eq!(
            check_options(&o).unwrap_err(),
            "--time \"2h\" is not a Slurm time (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS)"
        );
        o.time = Some("1-12:00:00".into());
        assert_eq!(check_options(&o), Ok(()));
        o.max_parallel = Some(0);
        assert_eq!(
            check_options(&o).unwrap_err(),
            "--max-parallel must be at least 1, got 0"
        );
        o.max_parallel = Some(1);
        o.cpus_per_task = Some(0);
        assert_eq!(
            check_options(&o).unwrap_err(),
            "--cpus-per-task must be at least 1, got 0"
        );
        o.cpus_per_task = None;
        assert_eq!(check_options(&o), Ok(()));
        assert_eq!(log_folder_ok(Path::new("/shared/my runs/logs")), Ok(()));
        assert_eq!(
            log_folder_ok(Path::new("/shared/100%/logs")).unwrap_err(),
            "\"/shared/100%/logs\": Slurm cannot write logs into a folder whose path holds quotes, %, backslashes or newlines; choose another --out"
        );
    }

    #[test]
    fn states_from_squeue_and_sacct() {
        let squeue = "800_0|COMPLETED\n800_1|RUNNING\n800_[2-4,7%2]|PENDING\n9|FAILED\n";
        let s = parse_states(squeue);
        assert_eq!(s["800_0"], "COMPLETED");
        assert_eq!(s["800_1"], "RUNNING");
        for t in [2, 3, 4, 7] {
            assert_eq!(s[&format!("800_{t}")], "PENDING");
        }
        assert_eq!(s["9"], "FAILED");
        assert_eq!(s.len(), 7);
        let sacct = parse_states("800_5|CANCELLED by 0\n800_6|TIMEOUT\n");
        assert_eq!(sacct["800_5"], "CANCELLED");
        assert!(state_ended("CANCELLED") && state_ended("TIMEOUT") && state_ended("COMPLETED"));
        assert!(!state_ended("PENDING") && !state_ended("RUNNING"));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cell-0003.17.log");
        std::fs::write(
            &p,
            "a\nscoring 1/9\rscoring 9/9\nb\n\nError: no such task\n",
        )
        .unwrap();
        assert_eq!(tail(&p, 2), vec!["b", "Error: no such task"]);
        assert_eq!(
            tail(&p, 9),
            vec!["a", "scoring 9/9", "b", "Error: no such task"]
        );
        assert_eq!(cell_logs(dir.path(), 3), vec![p]);
        assert!(cell_logs(dir.path(), 4).is_empty());
    }
}
