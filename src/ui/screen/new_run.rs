//! The New run screen: keys on the [`Form`]. ↑/↓ move between fields, ←/→ cycle a value, enter
//! edits a text field or starts; `s` starts, `w`/`o` write and open a spec file (through the
//! worker). Starting queues the run and its controls and follows the run on Live.

use std::path::PathBuf;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{Context, Ctx, Nav, move_cursor};
use crate::ui::form::{FIELDS, FieldId, Form};
use crate::ui::keymap::Action;
use crate::ui::request::Request;

impl Form {
    /// Takes a key while a text field is being edited: every key but enter (keep) and esc
    /// (drop). Returns whether the key was taken.
    pub fn text_key(&mut self, e: KeyEvent) -> bool {
        let Some(text) = self.editing.as_mut() else {
            return false;
        };
        match e.code {
            KeyCode::Enter => {
                let t = self.editing.take().unwrap_or_default();
                let f = self.field();
                self.set_text(f, t.trim().to_string());
            }
            KeyCode::Esc => self.editing = None,
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) if !e.modifiers.contains(KeyModifiers::CONTROL) => text.push(c),
            _ => {}
        }
        true
    }

    pub fn on_action(&mut self, a: Action, context: &Context, cx: &mut Ctx) -> Option<Nav> {
        if move_cursor(&mut self.cursor, FIELDS.len(), a, 5) {
            return None;
        }
        match a {
            Action::Left => self.cycle(false),
            Action::Right => self.cycle(true),
            Action::Enter => {
                let f = self.field();
                if f == FieldId::Start {
                    return self.start(context, cx);
                } else if Form::is_text(f) {
                    self.editing = Some(self.value(f));
                } else {
                    self.cycle(true);
                }
            }
            Action::StartRun => return self.start(context, cx),
            Action::SaveSpec => match self.specs(&context.model, &context.source) {
                Ok(specs) => cx.push(Request::SaveSpec {
                    path: PathBuf::from(&self.spec_file),
                    text: specs[0].to_toml(),
                }),
                Err(e) => cx.say(format!("cannot save: {e}")),
            },
            Action::LoadSpec => cx.push(Request::LoadSpec {
                path: PathBuf::from(&self.spec_file),
            }),
            _ => {}
        }
        None
    }

    /// Submits the form's run and its controls; Live follows the run once it is queued.
    pub fn start(&mut self, context: &Context, cx: &mut Ctx) -> Option<Nav> {
        match self.specs(&context.model, &context.source) {
            Ok(mut specs) => {
                // The run carries its controls (`controls.queue`); the engine queues them, or
                // reuses runs that answer them already.
                let n = specs.len();
                let ticket = cx.submit(specs.swap_remove(0));
                cx.say(if n == 1 {
                    "run queued".into()
                } else {
                    format!("run queued with {} controls", n - 1)
                });
                Some(Nav::Follow(ticket))
            }
            Err(e) => {
                self.recheck();
                cx.say(format!("cannot start: {e}"));
                None
            }
        }
    }
}
