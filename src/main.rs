//! `repro` binary: parse arguments, run, map the outcome to the documented exit codes
//! (0 all good, 1 a target failed or a gate regression, 2 usage/config/data/infrastructure error).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    repro::machine::tune_allocator();
    let cli = match repro::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    // libtorch panics inside a target are caught and recorded; keep their default trace off screen.
    std::panic::set_hook(Box::new(|_| {}));
    repro::Outcome::exit_code(&repro::app::main(cli))
}
