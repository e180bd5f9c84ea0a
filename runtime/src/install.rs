//! Desktop integration (issue 21): `--smolvm-install` puts the packed tool
//! on the person's `PATH` and in their desktop's application menu;
//! `--smolvm-uninstall` takes both away.
//!
//! ```text
//! ~/.local/bin/NAME                                  a copy of this executable
//! $XDG_DATA_HOME/applications/smolvm-NAME.desktop    its menu entry
//!   (default ~/.local/share/applications)            (Terminal=true)
//! $XDG_DATA_HOME/icons/hicolor/SxS/apps/smolvm-NAME.png
//!                                                    its icon, when it has one
//! ```
//!
//! The icon is the artifact's signed `icon` section, a PNG the packer
//! checked; it is copied as it is (never decoded here) into the largest
//! hicolor size directory not above its width ([`HICOLOR_SIZES`]), and the
//! entry names it `Icon=smolvm-NAME`.
//!
//! `~/.local/bin` is where the XDG Base Directory specification puts a
//! person's executables (it has no variable for it); the menu entry follows
//! the same rule as every other directory here (crate::dirs). The entry's
//! file is `smolvm-NAME.desktop`, not `NAME.desktop`: an entry in the
//! person's directory hides a system one of the same id, and an artifact
//! named `firefox` must not take over the Firefox launcher.
//!
//! What an install refuses (the name is signed but the signer chose it):
//! * an artifact that does not verify (exit 1), as a start would;
//! * replacing a file in `~/.local/bin` that is not an earlier install of
//!   this same name (a smolmachine whose signed name is NAME): exit 2;
//! * a name that another program on `PATH` already has (`ls`, `git`): in
//!   `~/.local/bin` it would be run instead of that one. Exit 2.
//!
//! Uninstall removes the copy (only when it is a smolmachine of this name)
//! and the entry.

use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum InstallError {
    #[error("cannot find your home directory: HOME is not set to an absolute path")]
    NoHome,
    #[error("{}: cannot {action} it", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{} exists and is not {name} installed by smolvm; move it away to install {name} there", path.display())]
    NotOurs { path: PathBuf, name: String },
    #[error("{name} is already the name of {}, which your PATH finds; installed in {}, {name} would be run in its place (rename the file and copy it yourself, if that is what you want)", other.display(), dir.display())]
    Shadows {
        name: String,
        other: PathBuf,
        dir: PathBuf,
    },
    #[error("{} is not a path a menu entry can hold (not UTF-8, or a line break)", path.display())]
    BadPath { path: PathBuf },
    #[error("{0}")]
    BadName(String),
    /// The artifact's icon section is not a PNG (the packer checks it; a
    /// hand-made artifact may not be).
    #[error("the icon section is not a PNG image (no PNG signature and IHDR); pack it again with a PNG icon")]
    BadIcon,
}

impl crate::exit::ExitStatus for InstallError {
    fn exit_code(&self) -> u8 {
        match self {
            InstallError::BadIcon => crate::exit::INVALID,
            _ => crate::exit::USAGE_OR_IO,
        }
    }
}

/// The hicolor theme's size directories (`SxS/apps`), as the
/// hicolor-icon-theme package's index.theme lists them.
pub const HICOLOR_SIZES: [u32; 13] = [16, 22, 24, 32, 36, 48, 64, 72, 96, 128, 192, 256, 512];

/// The width of a PNG from its `IHDR` (signature, then the `IHDR` chunk
/// whose first field is the width), or `None` if `png` does not start so.
pub fn png_width(png: &[u8]) -> Option<u32> {
    const START: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR";
    let width = png.strip_prefix(START)?.get(..4)?;
    Some(u32::from_be_bytes(width.try_into().ok()?))
}

/// The hicolor size directory for an icon `width` pixels wide: the largest
/// not above it (an icon is scaled down, not up), 16 below that.
pub fn hicolor_size(width: u32) -> u32 {
    HICOLOR_SIZES
        .iter()
        .copied()
        .filter(|&s| s <= width)
        .max()
        .unwrap_or(HICOLOR_SIZES[0])
}

/// Where an install puts things.
#[derive(Clone, Debug)]
pub struct Places {
    /// `~/.local/bin`.
    pub bin: PathBuf,
    /// `$XDG_DATA_HOME/applications`.
    pub applications: PathBuf,
    /// `$XDG_DATA_HOME/icons/hicolor`.
    pub icons: PathBuf,
}

impl Places {
    /// From the environment (crate::dirs rules).
    pub fn from_env() -> Result<Places, InstallError> {
        Ok(Places {
            bin: crate::dirs::user_bin().ok_or(InstallError::NoHome)?,
            applications: crate::dirs::applications().ok_or(InstallError::NoHome)?,
            icons: crate::dirs::hicolor_icons().ok_or(InstallError::NoHome)?,
        })
    }

    pub fn program(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    pub fn entry(&self, name: &str) -> PathBuf {
        self.applications.join(format!("smolvm-{name}.desktop"))
    }

    /// The icon of `name` in the size directory `size`.
    pub fn icon(&self, name: &str, size: u32) -> PathBuf {
        self.icons
            .join(format!("{size}x{size}/apps"))
            .join(format!("{}.png", icon_name(name)))
    }
}

/// The theme name of `name`'s icon (the entry's `Icon=`).
fn icon_name(name: &str) -> String {
    format!("smolvm-{name}")
}

/// What the menu entry says.
pub struct EntryInfo<'a> {
    pub name: &'a str,
    pub version: &'a str,
    /// The signer's key id, when signed.
    pub signer: Option<String>,
    /// The artifact's icon (a PNG), when it has one.
    pub icon: Option<&'a [u8]>,
}

/// The `.desktop` file for `program`: Desktop Entry Specification 1.4, the
/// newest that bookworm's `desktop-file-validate` knows (nothing of 1.5 is
/// used).
pub fn desktop_entry(info: &EntryInfo<'_>, program: &Path) -> Result<String, InstallError> {
    let exec = exec_value(program)?;
    let signer = info
        .signer
        .as_deref()
        .map_or("unsigned".to_string(), |k| format!("signer key {k}"));
    let icon = if info.icon.is_some() {
        format!("Icon={}\n", icon_name(info.name))
    } else {
        String::new()
    };
    Ok(format!(
        "[Desktop Entry]\n\
         Type=Application\n\
         Version=1.4\n\
         Name={name}\n\
         Comment={name} {version}, a smolmachine ({signer})\n\
         Exec={exec}\n\
         TryExec={try_exec}\n\
         {icon}\
         Terminal=true\n\
         Categories=Utility;\n",
        name = info.name,
        version = info.version,
        try_exec = string_value(path_text(program)?),
    ))
}

fn path_text(path: &Path) -> Result<&str, InstallError> {
    path.to_str()
        .filter(|t| !t.contains(['\n', '\r']))
        .ok_or_else(|| InstallError::BadPath {
            path: path.to_path_buf(),
        })
}

/// A `string` value: backslash escaped (the spec's `\\`).
fn string_value(text: &str) -> String {
    text.replace('\\', "\\\\")
}

/// The `Exec` key for running `program` with no arguments: quoted when it
/// holds a reserved character (inside the quotes `"`, `` ` ``, `$` and `\`
/// take a backslash), `%` doubled (field codes), then escaped as any string
/// value.
fn exec_value(program: &Path) -> Result<String, InstallError> {
    let text = path_text(program)?;
    const RESERVED: &[char] = &[
        ' ', '\t', '"', '\'', '\\', '>', '<', '~', '|', '&', ';', '$', '*', '?', '#', '(', ')', '`',
    ];
    let arg = if text.contains(RESERVED) {
        let mut quoted = String::from("\"");
        for c in text.chars() {
            if matches!(c, '"' | '`' | '$' | '\\') {
                quoted.push('\\');
            }
            quoted.push(c);
        }
        quoted.push('"');
        quoted
    } else {
        text.to_string()
    };
    Ok(string_value(&arg.replace('%', "%%")))
}

/// Whether `path` holds a smolmachine whose signed name is `name`.
fn is_installed_copy(path: &Path, name: &str) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(src) = smolvm_format::FileSource::new(file) else {
        return false;
    };
    smolvm_format::Artifact::parse(&src).is_ok_and(|a| a.manifest.name == name)
}

/// The first `name` on `path_var` (`PATH`) outside `own` (the install
/// directory itself).
fn on_path(name: &str, path_var: Option<&std::ffi::OsStr>, own: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path_var?)
        .filter(|d| d.is_absolute() && d != own)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// What an install did.
pub struct Installed {
    pub program: PathBuf,
    pub entry: PathBuf,
    /// The icon, when the artifact has one.
    pub icon: Option<PathBuf>,
    /// An earlier install of this name was replaced.
    pub replaced: bool,
}

/// Writes `bytes` to `path` (mode 0644) through a temporary file beside it.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    let dir = path.parent().expect("install paths have a directory");
    let io = |action| {
        move |source| InstallError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(|source| InstallError::Io {
        path: dir.to_path_buf(),
        action: "create",
        source,
    })?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|source| InstallError::Io {
        path: dir.to_path_buf(),
        action: "write a file in",
        source,
    })?;
    tmp.write_all(bytes).map_err(io("write"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io("write"))?;
    }
    tmp.as_file().sync_all().map_err(io("write"))?;
    tmp.persist(path).map_err(|e| io("replace")(e.error))?;
    Ok(())
}

/// Removes the icons of `name` in every hicolor size directory; returns
/// the paths removed.
fn remove_icons(name: &str, places: &Places) -> Result<Vec<PathBuf>, InstallError> {
    let mut removed = Vec::new();
    for size in HICOLOR_SIZES {
        let path = places.icon(name, size);
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(InstallError::Io {
                    path,
                    action: "remove",
                    source,
                })
            }
        }
    }
    Ok(removed)
}

/// Installs `exe` (this executable, already verified by the caller) as
/// `info.name`.
pub fn install(
    exe: &mut std::fs::File,
    info: &EntryInfo<'_>,
    places: &Places,
    path_var: Option<&std::ffi::OsStr>,
) -> Result<Installed, InstallError> {
    smolvm_format::manifest::validate_name(info.name).map_err(InstallError::BadName)?;
    let program = places.program(info.name);
    let entry = places.entry(info.name);
    let replaced = program.symlink_metadata().is_ok();
    if replaced && !is_installed_copy(&program, info.name) {
        return Err(InstallError::NotOurs {
            path: program,
            name: info.name.to_string(),
        });
    }
    if let Some(other) = on_path(info.name, path_var, &places.bin) {
        return Err(InstallError::Shadows {
            name: info.name.to_string(),
            other,
            dir: places.bin.clone(),
        });
    }
    let icon = match info.icon {
        Some(png) => Some((
            places.icon(
                info.name,
                hicolor_size(png_width(png).ok_or(InstallError::BadIcon)?),
            ),
            png,
        )),
        None => None,
    };
    let text = desktop_entry(info, &program)?;
    let io = |path: &Path, action| {
        let path = path.to_path_buf();
        move |source| InstallError::Io {
            path,
            action,
            source,
        }
    };
    for dir in [&places.bin, &places.applications] {
        std::fs::create_dir_all(dir).map_err(io(dir, "create"))?;
    }
    // The copy: written beside its place, made executable, synced, renamed
    // (a start of the old copy meanwhile runs the old one whole).
    {
        use std::io::Seek;
        use std::os::unix::fs::PermissionsExt;
        let mut tmp = tempfile::NamedTempFile::new_in(&places.bin)
            .map_err(io(&places.bin, "write a file in"))?;
        exe.rewind().map_err(io(&program, "copy this program to"))?;
        std::io::copy(exe, tmp.as_file_mut()).map_err(io(&program, "copy this program to"))?;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o755))
            .map_err(io(&program, "make executable"))?;
        tmp.as_file().sync_all().map_err(io(&program, "write"))?;
        tmp.persist(&program)
            .map_err(|e| io(&program, "replace")(e.error))?;
    }
    {
        let mut tmp = tempfile::NamedTempFile::new_in(&places.applications)
            .map_err(io(&places.applications, "write a file in"))?;
        tmp.write_all(text.as_bytes())
            .map_err(io(&entry, "write"))?;
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(io(&entry, "write"))?;
        }
        tmp.as_file().sync_all().map_err(io(&entry, "write"))?;
        tmp.persist(&entry)
            .map_err(|e| io(&entry, "replace")(e.error))?;
    }
    // An earlier install's icon (another size, or none now) goes first.
    remove_icons(info.name, places)?;
    if let Some((path, png)) = &icon {
        write_file(path, png)?;
    }
    Ok(Installed {
        program,
        entry,
        icon: icon.map(|(path, _)| path),
        replaced,
    })
}

/// Removes what [`install`] put in place for `name`; returns what was
/// removed (nothing: it was not installed).
pub fn uninstall(name: &str, places: &Places) -> Result<Vec<PathBuf>, InstallError> {
    smolvm_format::manifest::validate_name(name).map_err(InstallError::BadName)?;
    let program = places.program(name);
    let entry = places.entry(name);
    let mut removed = Vec::new();
    if program.symlink_metadata().is_ok() {
        if !is_installed_copy(&program, name) {
            return Err(InstallError::NotOurs {
                path: program,
                name: name.to_string(),
            });
        }
        std::fs::remove_file(&program).map_err(|source| InstallError::Io {
            path: program.clone(),
            action: "remove",
            source,
        })?;
        removed.push(program);
    }
    match std::fs::remove_file(&entry) {
        Ok(()) => removed.push(entry),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(InstallError::Io {
                path: entry,
                action: "remove",
                source,
            })
        }
    }
    removed.extend(remove_icons(name, places)?);
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_quotes_reserved_characters_and_escapes() {
        let exec = |p: &str| exec_value(Path::new(p)).unwrap();
        assert_eq!(exec("/home/a/.local/bin/notes"), "/home/a/.local/bin/notes");
        assert_eq!(
            exec("/home/a b/.local/bin/notes"),
            "\"/home/a b/.local/bin/notes\""
        );
        // Inside quotes: \$ and \\ (then each backslash doubled as a
        // string value); % doubled.
        assert_eq!(exec("/h/$x/bin/n"), "\"/h/\\\\$x/bin/n\"");
        assert_eq!(exec("/h/100%/n"), "/h/100%%/n");
        assert!(exec_value(Path::new("/h/a\nb")).is_err());
    }

    #[test]
    fn the_entry_runs_the_copy_in_a_terminal() {
        let info = EntryInfo {
            name: "notes",
            version: "1.2.0",
            signer: Some("0102030405060708".into()),
            icon: None,
        };
        let text = desktop_entry(&info, Path::new("/home/a/.local/bin/notes")).unwrap();
        assert!(!text.contains("Icon="), "{text}");
        let png = [b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".as_slice(), &[0, 0, 1, 0]].concat();
        let with_icon = EntryInfo {
            icon: Some(&png),
            ..info
        };
        let iconic = desktop_entry(&with_icon, Path::new("/home/a/.local/bin/notes")).unwrap();
        assert!(iconic.lines().any(|l| l == "Icon=smolvm-notes"), "{iconic}");
        assert!(text.starts_with("[Desktop Entry]\nType=Application\n"));
        for line in [
            "Name=notes",
            "Exec=/home/a/.local/bin/notes",
            "Terminal=true",
            "Comment=notes 1.2.0, a smolmachine (signer key 0102030405060708)",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}: {text}");
        }
    }

    #[test]
    fn the_icon_goes_to_the_largest_hicolor_size_not_above_its_width() {
        let png = |w: u32| {
            [
                b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".as_slice(),
                &w.to_be_bytes(),
            ]
            .concat()
        };
        assert_eq!(png_width(&png(256)), Some(256));
        assert_eq!(png_width(b"GIF89a"), None);
        assert_eq!(png_width(&png(256)[..19]), None);
        for (w, s) in [
            (1024, 512),
            (512, 512),
            (256, 256),
            (100, 96),
            (48, 48),
            (17, 16),
            (3, 16),
        ] {
            assert_eq!(hicolor_size(w), s, "{w}");
        }
    }

    #[test]
    fn a_name_on_path_is_found_outside_the_install_directory() {
        let t = tempfile::tempdir().unwrap();
        let (a, own) = (t.path().join("a"), t.path().join("own"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&own).unwrap();
        use std::os::unix::fs::PermissionsExt;
        for d in [&a, &own] {
            std::fs::write(d.join("ls"), "").unwrap();
            std::fs::set_permissions(d.join("ls"), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(a.join("data"), "").unwrap();
        let path = std::env::join_paths([&own, &a]).unwrap();
        assert_eq!(on_path("ls", Some(&path), &own), Some(a.join("ls")));
        assert_eq!(on_path("data", Some(&path), &own), None, "not executable");
        let only_own = std::env::join_paths([&own]).unwrap();
        assert_eq!(on_path("ls", Some(&only_own), &own), None);
    }
}
