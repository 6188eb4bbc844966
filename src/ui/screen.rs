//! Screens that own their state. Each takes the actions of its keymap scope and says where to
//! go next as a [`Nav`]; what must happen outside goes into the outbox through [`Ctx`]. The app
//! routes keys and events to them.

pub mod compare;
pub mod help;
pub mod pool;

use super::keymap::Action;
use super::request::Request;

/// What a screen may touch beyond its own state.
pub struct Ctx<'a> {
    pub outbox: &'a mut Vec<Request>,
    pub message: &'a mut Option<String>,
}

/// Where a screen sends the user.
#[derive(Debug, Clone, PartialEq)]
pub enum Nav {
    /// The New run form, with these adapters picked by hand (none: as it was).
    NewRunWith(Vec<String>),
}

/// Moves a cursor over `n` rows; `page` rows per page.
pub fn move_cursor(cursor: &mut usize, n: usize, a: Action, page: usize) -> bool {
    if n == 0 {
        return false;
    }
    let c = *cursor;
    *cursor = match a {
        Action::Up => c.saturating_sub(1),
        Action::Down => (c + 1).min(n - 1),
        Action::PageUp => c.saturating_sub(page),
        Action::PageDown => (c + page).min(n - 1),
        Action::Top => 0,
        Action::Bottom => n - 1,
        _ => return false,
    };
    true
}
