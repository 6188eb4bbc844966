//! The UI's config file: `$LORACYCLE_CONFIG`, else `~/.config/loracycle/config.toml`. Everything
//! in it is optional; the embedded defaults are used for what it leaves out.
//!
//! ```toml
//! theme = "light"            # dark (default), light, monochrome, or a path to a theme file
//! [colors]                   # single colours over the theme
//! accent = "#ff8800"
//! [keys]                     # action name = key or list of keys (names on the help screen)
//! quit = ["q", "ctrl-q"]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::keymap::Keymap;
use super::theme::Theme;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    theme: Option<String>,
    #[serde(default)]
    colors: BTreeMap<String, String>,
    #[serde(default)]
    keys: BTreeMap<String, OneOrMany>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Where the config file is looked for.
pub fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LORACYCLE_CONFIG") {
        return Some(PathBuf::from(p));
    }
    directories::ProjectDirs::from("", "", "loracycle").map(|d| d.config_dir().join("config.toml"))
}

/// Theme and keymap from the config file's text (`None`: no file). `no_color` forces the
/// monochrome theme whatever the file says (https://no-color.org).
pub fn load(text: Option<&str>, path: &Path, no_color: bool) -> Result<(Theme, Keymap), String> {
    let at = |e: String| format!("{}: {e}", path.display());
    let file: ConfigFile = match text {
        Some(t) => toml::from_str(t).map_err(|e| at(e.message().to_string()))?,
        None => ConfigFile::default(),
    };
    let theme_text = match file.theme.as_deref() {
        _ if no_color => super::theme::BUILT_IN[2].1.to_string(),
        None => super::theme::BUILT_IN[0].1.to_string(),
        Some(name) => match super::theme::BUILT_IN.iter().find(|(n, _)| *n == name) {
            Some((_, t)) => t.to_string(),
            None => {
                let p = path.parent().unwrap_or(Path::new(".")).join(name);
                crate::untrusted::read_text(&p, crate::untrusted::SMALL).map_err(|e| {
                    at(format!(
                        "theme {name:?} is neither dark, light, monochrome nor a readable file ({e})"
                    ))
                })?
            }
        },
    };
    let overrides = if no_color {
        BTreeMap::new()
    } else {
        file.colors
    };
    let theme = Theme::parse(&theme_text, &overrides).map_err(at)?;
    let keys: BTreeMap<String, Vec<String>> = file
        .keys
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                match v {
                    OneOrMany::One(s) => vec![s],
                    OneOrMany::Many(v) => v,
                },
            )
        })
        .collect();
    let keymap = Keymap::with_overrides(&keys).map_err(at)?;
    Ok((theme, keymap))
}

/// Reads the config file, if there is one.
pub fn load_default() -> Result<(Theme, Keymap), String> {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let Some(path) = config_path() else {
        return load(None, Path::new("config.toml"), no_color);
    };
    match crate::untrusted::read_text(&path, crate::untrusted::SMALL) {
        Ok(t) => load(Some(&t), &path, no_color),
        Err(crate::untrusted::UntrustedError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            load(None, &path, no_color)
        }
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::style::Color;

    #[test]
    fn file_layers_over_defaults() {
        let p = Path::new("/cfg/config.toml");
        let (t, k) = load(None, p, false).unwrap();
        assert_eq!(t.name, "dark");
        assert_eq!(k.bindings.len(), Keymap::default().bindings.len());
        let text = "theme = \"light\"\n[colors]\naccent = \"red\"\n[keys]\nquit = \"x\"\n";
        let (t, k) = load(Some(text), p, false).unwrap();
        assert_eq!((t.name.as_str(), t.accent), ("light", Color::Red));
        assert_eq!(k.bindings[0].keys[0].to_string(), "x");
        let (t, _) = load(Some(text), p, true).unwrap();
        assert_eq!((t.name.as_str(), t.accent), ("monochrome", Color::Reset));
    }

    #[test]
    fn errors_name_the_file() {
        let p = Path::new("/cfg/config.toml");
        assert_eq!(
            load(Some("colour = 1"), p, false).unwrap_err(),
            "/cfg/config.toml: unknown field `colour`, expected one of `theme`, `colors`, `keys`"
        );
        assert_eq!(
            load(Some("theme = \"neon\""), p, false).unwrap_err(),
            "/cfg/config.toml: theme \"neon\" is neither dark, light, monochrome nor a readable file (/cfg/neon: No such file or directory (os error 2))"
        );
    }
}
