//! The Pool screen: the adapters of the pool, searched, filtered by status, sorted and picked
//! for a run by hand; Hub adapters are downloaded from here.

use std::collections::BTreeSet;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{Ctx, Nav, move_cursor};
use crate::pool::Filter;
use crate::pool::entry::{EntryStatus, PoolEntry, SortKey};
use crate::ui::keymap::Action;
use crate::ui::request::Request;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    All,
    Usable,
    Rejected,
    NotDownloaded,
}

impl StatusFilter {
    pub fn name(self) -> &'static str {
        match self {
            StatusFilter::All => "all",
            StatusFilter::Usable => "usable",
            StatusFilter::Rejected => "rejected",
            StatusFilter::NotDownloaded => "not downloaded",
        }
    }

    fn next(self) -> Self {
        match self {
            StatusFilter::All => StatusFilter::Usable,
            StatusFilter::Usable => StatusFilter::Rejected,
            StatusFilter::Rejected => StatusFilter::NotDownloaded,
            StatusFilter::NotDownloaded => StatusFilter::All,
        }
    }

    fn keeps(self, s: &EntryStatus) -> bool {
        match self {
            StatusFilter::All => true,
            StatusFilter::Usable => *s == EntryStatus::Usable,
            StatusFilter::Rejected => matches!(s, EntryStatus::Rejected { .. }),
            StatusFilter::NotDownloaded => *s == EntryStatus::NotDownloaded,
        }
    }
}

/// Screening scores by adapter id: (exact match, loss).
pub type Scores = std::collections::BTreeMap<String, (f64, f64)>;

/// The Pool screen's state.
#[derive(Debug, Clone)]
pub struct PoolScreen {
    pub entries: Vec<PoolEntry>,
    /// Indexes into `entries` that pass search and filter, in sort order.
    pub visible: Vec<usize>,
    pub cursor: usize,
    pub search: String,
    pub searching: bool,
    pub status: StatusFilter,
    pub sort: SortKey,
    pub selected: BTreeSet<String>,
    /// Why the search, read as a filter expression, does not parse.
    pub search_error: Option<String>,
    /// Loading progress while the listing is read: (what, done, total).
    pub loading: Option<(String, usize, usize)>,
    pub error: Option<String>,
    /// Hub downloads: id → state line.
    pub downloads: Vec<(String, String)>,
    /// The last screening a run of this UI did: its task, and each adapter's (exact match,
    /// loss) on it.
    pub scores: Option<(String, Scores)>,
    /// Sorted by the screening score (best first) instead of `sort`.
    pub by_score: bool,
}

impl PoolScreen {
    pub fn new() -> Self {
        PoolScreen {
            entries: Vec::new(),
            visible: Vec::new(),
            cursor: 0,
            search: String::new(),
            searching: false,
            status: StatusFilter::All,
            sort: SortKey::Name,
            selected: BTreeSet::new(),
            search_error: None,
            loading: Some(("reading the pool".into(), 0, 0)),
            error: None,
            downloads: Vec::new(),
            scores: None,
            by_score: false,
        }
    }

    /// Recomputes the visible rows, keeping the cursor on the same entry where it can.
    pub fn refresh(&mut self) {
        let current = self.visible.get(self.cursor).copied();
        // A search with an operator is a filter expression (`rank<=16,modules=all`); anything
        // else is text looked for in ids and model cards.
        self.search_error = None;
        let filter: Option<Filter> = if self.search.contains(['<', '>', '=', '~']) {
            match self.search.parse() {
                Ok(f) => Some(f),
                Err(e) => {
                    self.search_error = Some(format!("{e}"));
                    self.visible.clear();
                    self.cursor = 0;
                    return;
                }
            }
        } else {
            None
        };
        let needle = self.search.to_lowercase();
        let mut v: Vec<usize> = (0..self.entries.len())
            .filter(|&i| {
                let e = &self.entries[i];
                self.status.keeps(&e.status)
                    && match &filter {
                        Some(f) => e.matches(f),
                        None => {
                            needle.is_empty()
                                || e.id.to_lowercase().contains(&needle)
                                || e.card
                                    .as_deref()
                                    .is_some_and(|c| c.to_lowercase().contains(&needle))
                        }
                    }
            })
            .collect();
        let e = &self.entries;
        match (&self.scores, self.by_score) {
            (Some((_, scores)), true) => {
                // Best exact match first, then lower loss; unscored adapters last.
                let key = |i: usize| scores.get(&e[i].id).copied();
                v.sort_by(|&a, &b| match (key(a), key(b)) {
                    (Some((ea, la)), Some((eb, lb))) => {
                        eb.total_cmp(&ea).then(la.total_cmp(&lb)).then(a.cmp(&b))
                    }
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => crate::pool::entry::compare(&e[a], &e[b], self.sort),
                })
            }
            _ => v.sort_by(|&a, &b| crate::pool::entry::compare(&e[a], &e[b], self.sort)),
        }
        self.cursor = current
            .and_then(|c| v.iter().position(|&i| i == c))
            .unwrap_or(0)
            .min(v.len().saturating_sub(1));
        self.visible = v;
    }

    pub fn current(&self) -> Option<&PoolEntry> {
        self.visible.get(self.cursor).map(|&i| &self.entries[i])
    }

    pub fn usable(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.status == EntryStatus::Usable)
            .count()
    }

    /// Takes a run's screening scores on `task`: the table gains a score column, and `s`
    /// can sort by it.
    pub fn set_scores(&mut self, task: String, scores: &[crate::run::record::ScreeningScore]) {
        let map = scores
            .iter()
            .map(|s| (s.name.clone(), (s.exact_match, s.loss)))
            .collect();
        self.scores = Some((task, map));
        self.refresh();
    }

    /// The sort's name for the search bar.
    pub fn sort_label(&self) -> String {
        match (&self.scores, self.by_score) {
            (Some((task, _)), true) => format!("score on {task}"),
            _ => self.sort.label().to_string(),
        }
    }

    /// Takes the pool listing's entries.
    pub fn set_entries(&mut self, entries: Vec<PoolEntry>) {
        self.entries = entries;
        self.loading = None;
        self.refresh();
    }

    /// Takes a key while the search line is open; whether it did.
    pub fn text_key(&mut self, e: KeyEvent) -> bool {
        if !self.searching {
            return false;
        }
        match e.code {
            KeyCode::Enter => self.searching = false,
            KeyCode::Esc => {
                self.searching = false;
                self.search.clear();
            }
            KeyCode::Backspace => {
                self.search.pop();
            }
            KeyCode::Char(c) if !e.modifiers.contains(KeyModifiers::CONTROL) => self.search.push(c),
            _ => return true,
        }
        self.refresh();
        true
    }

    pub fn on_action(&mut self, a: Action, cx: &mut Ctx) -> Option<Nav> {
        let n = self.visible.len();
        if move_cursor(&mut self.cursor, n, a, 10) {
            return None;
        }
        match a {
            Action::Search => self.searching = true,
            Action::Back => {
                self.search.clear();
                self.refresh();
            }
            Action::Select => {
                if let Some(e) = self.current() {
                    if e.status != EntryStatus::Usable {
                        *cx.message =
                            Some(format!("{} is not usable; it cannot be selected", e.id));
                        return None;
                    }
                    let id = e.id.clone();
                    if !self.selected.remove(&id) {
                        self.selected.insert(id);
                    }
                    move_cursor(&mut self.cursor, n, Action::Down, 1);
                }
            }
            Action::CycleStatus => {
                self.status = self.status.next();
                self.refresh();
            }
            // After the last key comes the screening score, once a run has screened the pool.
            Action::CycleSort => {
                if self.by_score {
                    self.by_score = false;
                    self.sort = SortKey::ALL[0];
                } else if self.scores.is_some() && self.sort.next() == SortKey::ALL[0] {
                    self.by_score = true;
                } else {
                    self.sort = self.sort.next();
                }
                self.refresh();
            }
            Action::ClearSelection => self.selected.clear(),
            Action::NewRunWithSelection => {
                return Some(Nav::NewRunWith(self.selected.iter().cloned().collect()));
            }
            Action::Download => match self.current() {
                Some(e) if e.status == EntryStatus::NotDownloaded && e.source == "hub" => {
                    let id = e.id.clone();
                    self.downloads.push((id.clone(), "queued".into()));
                    cx.outbox.push(Request::Download(id.clone()));
                    *cx.message = Some(format!("downloading {id}…"));
                }
                Some(e) => {
                    *cx.message = Some(format!("{} is already on disk", e.id));
                }
                None => {}
            },
            _ => {}
        }
        None
    }

    /// A download's progress or end, from the app loop; the line for the status bar.
    pub fn on_download(&mut self, id: &str, line: String, entry: Option<PoolEntry>) -> String {
        if let Some(d) = self.downloads.iter_mut().find(|(i, _)| i == id) {
            d.1 = line.clone();
        }
        if let Some(new) = entry
            && let Some(e) = self.entries.iter_mut().find(|e| e.id == id)
        {
            *e = new;
            self.refresh();
        }
        format!("{id}: {line}")
    }
}

impl Default for PoolScreen {
    fn default() -> Self {
        Self::new()
    }
}
