//! The person's consent to share their current directory (SECURITY-CHECKLIST
//! item 22): a machine packed with `share_cwd = true` only asks; the share
//! happens when the person says so.
//!
//! ```text
//! --smolvm-share-cwd / pack run --share-cwd / SMOLVM_SHARE_CWD=1  -> shared (given)
//! else remembered "always" for (signer key id, name, directory)  -> shared (remembered)
//! else no terminal (stdin and stderr not ttys)                   -> exit 2, naming the flag
//! else the prompt on /dev/tty: [y]es once / [a]lways / [N]o      -> shared, or exit 2
//! ```
//!
//! "Always" is remembered in `$XDG_STATE_HOME/smolvm/consent.json`, never
//! for the home directory or `/` (there only "once" is offered): a tool
//! allowed there would see everything the person has.
//!
//! [`decide`] is the decision, pure over its inputs; reading the terminal
//! ([`ask_on_tty`]) and the file ([`Consents`]) are the edges.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use smolvm_signing::KeyId;
use thiserror::Error;

use crate::escape::escape_untrusted;
use crate::state_file::{self, StateError};

/// Longest answer line read from the terminal; the rest is not an answer.
const MAX_ANSWER_LEN: u64 = 256;

#[derive(Debug, Error)]
pub enum ConsentError {
    #[error("{name} (signer key {key_id}) asks to share your current directory {} read-write, and there is no terminal to ask you on; to share it, start with --smolvm-share-cwd (smolvm pack run: --share-cwd) or SMOLVM_SHARE_CWD=1", shown(dir))]
    NoTerminal {
        name: String,
        key_id: KeyId,
        dir: PathBuf,
    },
    #[error("not shared; {name} does not start without your current directory {} (to share it without the question: --smolvm-share-cwd)", shown(dir))]
    Declined { name: String, dir: PathBuf },
    #[error("asking on the terminal (/dev/tty) whether to share the current directory")]
    Prompt(#[source] std::io::Error),
    #[error(transparent)]
    State(#[from] StateError),
}

fn shown(dir: &Path) -> String {
    escape_untrusted(&dir.to_string_lossy()).into_owned()
}

/// How the question is put: [`ask_on_tty`], or a test's answers.
pub type AskFn = fn(&Question<'_>) -> std::io::Result<Answer>;

/// What the person answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Once,
    Always,
    No,
}

/// Why the directory is shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// The flag or the environment variable, for this start.
    Given,
    /// An earlier "always" for this signer, name and directory.
    Remembered,
    /// "yes" for this start.
    Once,
    /// "always": remember it (the caller writes it once the start is prepared).
    Always,
}

/// What the person is asked.
pub struct Question<'a> {
    /// Canonical.
    pub dir: &'a Path,
    /// The artifact's (signed) name.
    pub name: &'a str,
    pub key_id: KeyId,
    /// "always" is offered (not for the home directory or `/`).
    pub can_remember: bool,
}

impl Question<'_> {
    /// The text shown on the terminal.
    pub fn prompt(&self) -> String {
        let choices = if self.can_remember {
            "[y]es once / [a]lways for this directory / [N]o"
        } else {
            "[y]es once / [N]o (never remembered for your home directory or /)"
        };
        format!(
            "{} (signer key {}) asks to share your current directory\n  {}\nread-write with the machine (at {}). Share it? {choices}: ",
            self.name,
            self.key_id,
            shown(self.dir),
            crate::settings::CWD_GUEST_PATH
        )
    }
}

/// Whether "always" may be remembered for `dir` (canonical): not `/`, not
/// the home directory (`home`, canonical), and only a path the state file
/// can hold as text.
pub fn can_remember(dir: &Path, home: Option<&Path>) -> bool {
    dir != Path::new("/") && Some(dir) != home && dir.to_str().is_some()
}

/// The decision. `remembered`: the state holds "always" for this question;
/// `given`: the flag or `SMOLVM_SHARE_CWD=1`; `terminal`: stdin and stderr
/// are terminals; `ask` puts the question (only called on a terminal).
pub fn decide(
    q: &Question<'_>,
    remembered: bool,
    given: bool,
    terminal: bool,
    ask: &mut dyn FnMut(&Question<'_>) -> std::io::Result<Answer>,
) -> Result<Grant, ConsentError> {
    if given {
        return Ok(Grant::Given);
    }
    if remembered && q.can_remember {
        return Ok(Grant::Remembered);
    }
    if !terminal {
        return Err(ConsentError::NoTerminal {
            name: q.name.to_string(),
            key_id: q.key_id,
            dir: q.dir.to_path_buf(),
        });
    }
    match ask(q).map_err(ConsentError::Prompt)? {
        Answer::Always if q.can_remember => Ok(Grant::Always),
        Answer::Always | Answer::Once => Ok(Grant::Once),
        Answer::No => Err(ConsentError::Declined {
            name: q.name.to_string(),
            dir: q.dir.to_path_buf(),
        }),
    }
}

/// An answer line: `y`/`yes` once, `a`/`always`, anything else (an empty
/// line, end of input) no.
pub fn parse_answer(line: &str) -> Answer {
    match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Answer::Once,
        "a" | "always" => Answer::Always,
        _ => Answer::No,
    }
}

/// Asks on the controlling terminal (`/dev/tty`, not stdin: the workload's
/// input stays the workload's) and reads one line.
pub fn ask_on_tty(q: &Question<'_>) -> std::io::Result<Answer> {
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    tty.write_all(q.prompt().as_bytes())?;
    tty.flush()?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte: nothing past the answer's newline is taken from the
    // terminal's input (it is the workload's).
    while (line.len() as u64) < MAX_ANSWER_LEN {
        match tty.read(&mut byte)? {
            0 => break,
            _ if byte[0] == b'\n' => break,
            _ => line.push(byte[0]),
        }
    }
    Ok(parse_answer(&String::from_utf8_lossy(&line)))
}

/// The remembered "always" answers:
/// `{"<key id> <name>": ["<canonical directory>", ...]}`.
pub struct Consents {
    path: PathBuf,
    allowed: BTreeMap<String, Vec<String>>,
}

const WHAT: &str = "consent state";
const FIX: &str = "remove the file to forget every remembered consent";

fn entry(key_id: KeyId, name: &str) -> String {
    format!("{key_id} {name}")
}

/// `$XDG_STATE_HOME/smolvm/consent.json`, else under `$HOME/.local/state`.
pub fn default_consent_file() -> Option<PathBuf> {
    crate::dirs::state().map(|d| d.join("consent.json"))
}

impl Consents {
    pub fn load(path: &Path) -> Result<Consents, ConsentError> {
        Ok(Consents {
            path: path.to_path_buf(),
            allowed: state_file::load(path, WHAT, FIX)?,
        })
    }

    /// Whether "always" was answered for this signer, name and directory.
    pub fn allows(&self, key_id: KeyId, name: &str, dir: &Path) -> bool {
        let Some(dir) = dir.to_str() else {
            return false;
        };
        self.allowed
            .get(&entry(key_id, name))
            .is_some_and(|dirs| dirs.iter().any(|d| d == dir))
    }

    /// Remembers "always" and writes the file (under its lock, so an
    /// answer another start remembered meanwhile is kept).
    pub fn remember(&mut self, key_id: KeyId, name: &str, dir: &Path) -> Result<(), ConsentError> {
        let Some(text) = dir.to_str() else {
            return Ok(());
        };
        self.allowed = state_file::update(
            &self.path,
            WHAT,
            FIX,
            |allowed: &mut BTreeMap<String, Vec<String>>| {
                let dirs: &mut Vec<String> = allowed.entry(entry(key_id, name)).or_default();
                if dirs.iter().any(|d| d == text) {
                    return false;
                }
                dirs.push(text.to_string());
                true
            },
        )?;
        Ok(())
    }
}

/// Consent is the person's: without it, or with a "no", the request is
/// what is missing (exit 2), as for any other usage error.
impl crate::exit::ExitStatus for ConsentError {
    fn exit_code(&self) -> u8 {
        crate::exit::USAGE_OR_IO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: KeyId = KeyId::from_bytes([7; 8]);

    fn q(dir: &Path, can_remember: bool) -> Question<'_> {
        Question {
            dir,
            name: "notes",
            key_id: K,
            can_remember,
        }
    }

    /// `decide` with an answer provider that records whether it was asked.
    fn run(
        q: &Question<'_>,
        remembered: bool,
        given: bool,
        terminal: bool,
        answer: Answer,
    ) -> (Result<Grant, ConsentError>, bool) {
        let mut asked = false;
        let r = decide(q, remembered, given, terminal, &mut |_| {
            asked = true;
            Ok(answer)
        });
        (r, asked)
    }

    #[test]
    fn the_flag_or_environment_shares_without_asking() {
        let d = Path::new("/home/me/project");
        for terminal in [false, true] {
            let (r, asked) = run(&q(d, true), false, true, terminal, Answer::No);
            assert_eq!(r.unwrap(), Grant::Given);
            assert!(!asked);
        }
    }

    #[test]
    fn without_consent_and_terminal_it_refuses_naming_the_flag() {
        let d = Path::new("/home/me/project");
        let (r, asked) = run(&q(d, true), false, false, false, Answer::Once);
        let e = r.unwrap_err();
        assert!(!asked);
        assert!(matches!(e, ConsentError::NoTerminal { .. }));
        let msg = e.to_string();
        assert!(msg.contains("--smolvm-share-cwd"), "{msg}");
        assert!(msg.contains("/home/me/project") && msg.contains("0707070707070707"));
        assert_eq!(crate::error::exit_code(&e), crate::exit::USAGE_OR_IO);
    }

    #[test]
    fn a_remembered_answer_shares_without_a_terminal() {
        let d = Path::new("/home/me/project");
        let (r, asked) = run(&q(d, true), true, false, false, Answer::No);
        assert_eq!(r.unwrap(), Grant::Remembered);
        assert!(!asked);
        // ...but never for a directory that cannot be remembered (a state
        // file edited by hand does not make $HOME shareable).
        let (r, _) = run(&q(d, false), true, false, false, Answer::No);
        assert!(matches!(r, Err(ConsentError::NoTerminal { .. })));
    }

    #[test]
    fn the_terminal_answer_decides() {
        let d = Path::new("/home/me/project");
        assert_eq!(
            run(&q(d, true), false, false, true, Answer::Once)
                .0
                .unwrap(),
            Grant::Once
        );
        assert_eq!(
            run(&q(d, true), false, false, true, Answer::Always)
                .0
                .unwrap(),
            Grant::Always
        );
        // "always" where it cannot be remembered counts once.
        assert_eq!(
            run(&q(d, false), false, false, true, Answer::Always)
                .0
                .unwrap(),
            Grant::Once
        );
        let (r, asked) = run(&q(d, true), false, false, true, Answer::No);
        assert!(asked);
        let e = r.unwrap_err();
        assert!(e.to_string().starts_with("not shared; "), "{e}");
        assert_eq!(crate::error::exit_code(&e), crate::exit::USAGE_OR_IO);
        // A terminal that cannot be read is an error, not a yes.
        let r = decide(&q(d, true), false, false, true, &mut |_| {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        });
        assert!(matches!(r, Err(ConsentError::Prompt(_))));
    }

    #[test]
    fn home_and_root_are_never_remembered() {
        let home = Path::new("/home/me");
        assert!(!can_remember(Path::new("/"), Some(home)));
        assert!(!can_remember(home, Some(home)));
        assert!(can_remember(Path::new("/home/me/src"), Some(home)));
        assert!(can_remember(Path::new("/home/me/src"), None));
        use std::os::unix::ffi::OsStrExt;
        let odd = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/\xff"));
        assert!(!can_remember(odd, None));
        // The prompt offers "always" only where it is remembered.
        assert!(q(home, false).prompt().contains("[y]es once / [N]o"));
        let p = q(Path::new("/home/me/src"), true).prompt();
        assert!(p.contains("[a]lways for this directory") && p.contains("notes"));
        assert!(p.contains("0707070707070707") && p.contains("/home/me/src"));
    }

    #[test]
    fn answers_parse_and_default_to_no() {
        assert_eq!(parse_answer("y\n"), Answer::Once);
        assert_eq!(parse_answer(" YES "), Answer::Once);
        assert_eq!(parse_answer("a"), Answer::Always);
        assert_eq!(parse_answer("always\r\n"), Answer::Always);
        for no in ["", "\n", "n", "no", "yy", "maybe"] {
            assert_eq!(parse_answer(no), Answer::No, "{no:?}");
        }
    }

    #[test]
    fn remembered_per_signer_name_and_directory() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("state/consent.json");
        let other = KeyId::from_bytes([8; 8]);
        let (d, e) = (Path::new("/srv/a"), Path::new("/srv/b"));
        let mut c = Consents::load(&path).unwrap();
        assert!(!c.allows(K, "notes", d));
        c.remember(K, "notes", d).unwrap();
        c.remember(K, "notes", d).unwrap();
        let c = Consents::load(&path).unwrap();
        assert!(c.allows(K, "notes", d));
        assert!(!c.allows(K, "notes", e), "per directory");
        assert!(!c.allows(other, "notes", d), "per signer");
        assert!(!c.allows(K, "tool", d), "per name");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("/srv/a").count(), 1, "{text}");
        std::fs::write(&path, "{\"x\": 1}").unwrap();
        let e = Consents::load(&path).err().unwrap();
        assert!(
            e.to_string().contains("forget every remembered consent"),
            "{e}"
        );
    }
}
