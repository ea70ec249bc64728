//! `cap-panel`: parse the command line and hand over to the library.

fn main() -> anyhow::Result<()> {
    cap_panel::main_with_args(std::env::args_os())
}
