//! Colour themes: TOML files under `themes/`, embedded at build time, overridable entry by entry
//! from the config file. Colours parse with ratatui's own parser (names, `#rrggbb`, indexes).

use std::collections::BTreeMap;
use std::str::FromStr;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

/// The built-in themes, by name.
pub const BUILT_IN: [(&str, &str); 3] = [
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    ("monochrome", include_str!("../../themes/monochrome.toml")),
];

/// A theme file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    name: String,
    fg: String,
    bg: String,
    accent: String,
    dim: String,
    highlight_fg: String,
    highlight_bg: String,
    reverse_highlight: bool,
    marked: String,
    ok: String,
    warn: String,
    bad: String,
    train: String,
    val: String,
    bar: String,
    series: Vec<String>,
    heat: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub name: String,
    pub fg: Color,
    pub bg: Color,
    pub accent: Color,
    pub dim: Color,
    pub highlight_fg: Color,
    pub highlight_bg: Color,
    pub reverse_highlight: bool,
    pub marked: Color,
    pub ok: Color,
    pub warn: Color,
    pub bad: Color,
    pub train: Color,
    pub val: Color,
    pub bar: Color,
    pub series: Vec<Color>,
    pub heat: Vec<Color>,
}

fn color(field: &str, s: &str) -> Result<Color, String> {
    Color::from_str(s)
        .map_err(|_| format!("{field}: {s:?} is not a colour (a name, #rrggbb or 0-255)"))
}

impl Theme {
    /// A built-in theme by name.
    pub fn built_in(name: &str) -> Option<Theme> {
        BUILT_IN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, text)| Theme::parse(text, &BTreeMap::new()).expect("built-in themes parse"))
    }

    /// Parses a theme file, then applies `overrides` (field → colour).
    pub fn parse(text: &str, overrides: &BTreeMap<String, String>) -> Result<Theme, String> {
        let mut f: ThemeFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
        for (k, v) in overrides {
            let slot = match k.as_str() {
                "fg" => &mut f.fg,
                "bg" => &mut f.bg,
                "accent" => &mut f.accent,
                "dim" => &mut f.dim,
                "highlight_fg" => &mut f.highlight_fg,
                "highlight_bg" => &mut f.highlight_bg,
                "marked" => &mut f.marked,
                "ok" => &mut f.ok,
                "warn" => &mut f.warn,
                "bad" => &mut f.bad,
                "train" => &mut f.train,
                "val" => &mut f.val,
                "bar" => &mut f.bar,
                other => return Err(format!("[colors]: no colour named {other:?}")),
            };
            *slot = v.clone();
        }
        let list = |field: &str, v: &[String]| -> Result<Vec<Color>, String> {
            if v.is_empty() {
                return Err(format!("{field}: needs at least one colour"));
            }
            v.iter().map(|s| color(field, s)).collect()
        };
        Ok(Theme {
            name: f.name,
            fg: color("fg", &f.fg)?,
            bg: color("bg", &f.bg)?,
            accent: color("accent", &f.accent)?,
            dim: color("dim", &f.dim)?,
            highlight_fg: color("highlight_fg", &f.highlight_fg)?,
            highlight_bg: color("highlight_bg", &f.highlight_bg)?,
            reverse_highlight: f.reverse_highlight,
            marked: color("marked", &f.marked)?,
            ok: color("ok", &f.ok)?,
            warn: color("warn", &f.warn)?,
            bad: color("bad", &f.bad)?,
            train: color("train", &f.train)?,
            val: color("val", &f.val)?,
            bar: color("bar", &f.bar)?,
            series: list("series", &f.series)?,
            heat: list("heat", &f.heat)?,
        })
    }

    pub fn base(&self) -> Style {
        Style::new().fg(self.fg).bg(self.bg)
    }

    pub fn accent(&self) -> Style {
        Style::new().fg(self.accent).add_modifier(Modifier::BOLD)
    }

    pub fn dim(&self) -> Style {
        Style::new().fg(self.dim)
    }

    /// The cursor row of a list.
    pub fn highlight(&self) -> Style {
        if self.reverse_highlight {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new().fg(self.highlight_fg).bg(self.highlight_bg)
        }
    }

    pub fn fg(&self, c: Color) -> Style {
        Style::new().fg(c)
    }

    /// The colour of series `i` of a chart.
    pub fn series(&self, i: usize) -> Color {
        self.series[i % self.series.len()]
    }

    /// The heat-map colour of a value in [0, 1].
    pub fn heat(&self, v: f64) -> Color {
        let n = self.heat.len();
        let i = ((v.clamp(0.0, 1.0) * n as f64) as usize).min(n - 1);
        self.heat[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_themes_parse() {
        for (name, _) in BUILT_IN {
            let t = Theme::built_in(name).unwrap();
            assert_eq!(t.name, name);
        }
        assert_eq!(Theme::built_in("dark").unwrap().accent, Color::Cyan);
    }

    #[test]
    fn overrides_and_their_errors() {
        let text = BUILT_IN[0].1;
        let mut o = BTreeMap::new();
        o.insert("accent".to_string(), "#ff0000".to_string());
        assert_eq!(
            Theme::parse(text, &o).unwrap().accent,
            Color::Rgb(255, 0, 0)
        );
        o.insert("accent".to_string(), "nocolour".to_string());
        assert_eq!(
            Theme::parse(text, &o).unwrap_err(),
            "accent: \"nocolour\" is not a colour (a name, #rrggbb or 0-255)"
        );
        let mut o = BTreeMap::new();
        o.insert("glow".to_string(), "red".to_string());
        assert_eq!(
            Theme::parse(text, &o).unwrap_err(),
            "[colors]: no colour named \"glow\""
        );
    }
}
