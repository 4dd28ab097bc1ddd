//! `sealcam card write --image`: a disk image is untrusted bytes. Finding
//! its boot partition (GPT or MBR, then FAT) and writing the bundle into it
//! must refuse or succeed, never panic or touch bytes outside the image.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut image = std::io::Cursor::new(data.to_vec());
    let files = [("token", b"token\n".to_vec())];
    if let Ok(part) = sealcam::card::write_image_unguarded(&mut image, &files) {
        assert!(part.start + part.len <= data.len() as u64);
    }
});
