//! The help screen: the keymap of the screen it was opened from first, scrolled by line or page;
//! any other key goes back there.

use ratatui::crossterm::event::{KeyCode, KeyEvent};

use crate::ui::app::Screen;

#[derive(Debug, Clone)]
pub struct HelpScreen {
    /// The screen the help was opened from.
    pub from: Screen,
    pub scroll: u16,
}

impl HelpScreen {
    pub fn new() -> Self {
        HelpScreen {
            from: Screen::Pool,
            scroll: 0,
        }
    }

    pub fn open(&mut self, from: Screen) {
        self.from = from;
        self.scroll = 0;
    }

    /// Takes a key; the screen to go back to when it is not a scroll key.
    pub fn key(&mut self, e: KeyEvent) -> Option<Screen> {
        match e.code {
            KeyCode::Down | KeyCode::Char('j') => self.scroll += 1,
            KeyCode::Up | KeyCode::Char('k') => self.scroll = self.scroll.saturating_sub(1),
            KeyCode::PageDown => self.scroll += 10,
            KeyCode::PageUp => self.scroll = self.scroll.saturating_sub(10),
            _ => return Some(self.from),
        }
        None
    }
}

impl Default for HelpScreen {
    fn default() -> Self {
        Self::new()
    }
}
