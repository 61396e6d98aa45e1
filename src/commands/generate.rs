//! `generate` (hidden): the man pages and shell completions, from the clap
//! definition itself, for the package build.

use clap::CommandFactory;

use crate::cli::{Cli, GenerateArgs, Generated};
use crate::error::{Error, Result};
use crate::trusted;

pub fn run(args: &GenerateArgs) -> Result<()> {
    let dir = trusted::open_output_dir(&args.dir).map_err(|source| Error::OutputDir {
        what: "generate",
        source,
    })?;
    let mut cmd = Cli::command();
    cmd.build();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    match args.what {
        Generated::Man => {
            files.push(("f2b-route.8".into(), main_page(&cmd)?));
            for sub in cmd
                .get_subcommands()
                .filter(|s| !s.is_hide_set() && s.get_name() != "help")
            {
                // clap names a command with a &'static str; this process
                // ends right after.
                let name: &'static str =
                    Box::leak(format!("f2b-route-{}", sub.get_name()).into_boxed_str());
                let sub = sub.clone().name(name);
                files.push((format!("{name}.8"), page(&sub)?));
            }
        }
        Generated::Completions => {
            use clap_complete::Shell;
            for (shell, file) in [
                (Shell::Bash, "f2b-route.bash"),
                (Shell::Zsh, "_f2b-route"),
                (Shell::Fish, "f2b-route.fish"),
            ] {
                let mut out = Vec::new();
                clap_complete::generate(shell, &mut cmd, "f2b-route", &mut out);
                files.push((file.into(), out));
            }
        }
    }
    for (name, content) in files {
        dir.replace(&name, &content, 0o644).map_err(Error::Output)?;
    }
    Ok(())
}

/// f2b-route(8): clap's sections, with the exit codes as a section of
/// their own (from the one `Exit` definition) instead of the help's text.
fn main_page(cmd: &clap::Command) -> Result<Vec<u8>> {
    use roff::{bold, roman, Roff};
    let man = clap_mangen::Man::new(cmd.clone().after_help(None::<&str>)).section("8");
    let mut out = Vec::new();
    let io = |r: std::io::Result<()>| r.map_err(Error::Output);
    io(man.render_title(&mut out))?;
    io(man.render_name_section(&mut out))?;
    io(man.render_synopsis_section(&mut out))?;
    io(man.render_description_section(&mut out))?;
    io(man.render_options_section(&mut out))?;
    io(man.render_subcommands_section(&mut out))?;
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for e in crate::exit::Exit::ALL {
        roff.control("TP", []);
        roff.text([bold(format!("{} ({})", e.code(), e.name()))]);
        roff.text([roman(e.meaning())]);
    }
    roff.control("SH", ["SEE ALSO"]);
    let pages: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .map(|s| format!("f2b-route-{}(8)", s.get_name()))
        .chain(["fail2ban-client(1)".into(), "ip-route(8)".into()])
        .collect();
    roff.text([roman(pages.join(", "))]);
    io(roff.to_writer(&mut out))?;
    io(man.render_version_section(&mut out))?;
    Ok(out)
}

fn page(cmd: &clap::Command) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section("8")
        .render(&mut out)
        .map_err(Error::Output)?;
    Ok(out)
}
