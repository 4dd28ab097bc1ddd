//! No core dumps: a crashed sealcamd must not leave plaintext frames or the
//! open fragment's data key on disk.
//!
//! The daemon holds raw frames and data keys in memory; a core file would
//! write them out in the clear, breaking "plaintext never on disk". The unit
//! sets `LimitCORE=0`; the daemon also sets the limit itself (a manual run,
//! another init) and marks itself non-dumpable, which the kernel honours
//! even where `core_pattern` pipes to a dump collector, and which keeps other
//! processes of the same user from reading its memory through `/proc`.

/// Forbids core dumps of this process: a core size limit of zero, hard and
/// soft, and not dumpable.
pub fn forbid() -> std::io::Result<()> {
    use rustix::process::{set_dumpable_behavior, setrlimit, DumpableBehavior, Resource, Rlimit};
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )?;
    set_dumpable_behavior(DumpableBehavior::NotDumpable)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use rustix::process::{dumpable_behavior, getrlimit, DumpableBehavior, Resource};

    #[test]
    fn the_process_can_no_longer_dump_core() {
        super::forbid().unwrap();
        let limit = getrlimit(Resource::Core);
        assert_eq!((limit.current, limit.maximum), (Some(0), Some(0)));
        assert_eq!(dumpable_behavior().unwrap(), DumpableBehavior::NotDumpable);
    }
}
