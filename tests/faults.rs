//! Device loss: after the device goes away every call fails with a clear `device_lost` error, and a
//! new GPU context with the model loaded again works in the same process. Its own test binary,
//! since it destroys its device.

use std::path::Path;
use tessera::{Checkpoint, Gpu, Model, RunOptions};

#[test]
fn device_loss_is_reported_and_recovered_from() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vit-classifier");
    let ck = Checkpoint::from_dir(&dir).unwrap();
    let pixels = tessera::reference::Rng::new(3).vec(3 * 32 * 32, 1.0);
    let gpu = Gpu::from_env_blocking().expect("GPU tests need an adapter");
    let model = Model::load(&gpu, &ck).unwrap();
    let before = model.run_blocking(&pixels, [1, 3, 32, 32], RunOptions::default()).unwrap().logits.unwrap().data;

    gpu.destroy();
    assert!(gpu.is_lost());
    let e = model.run_blocking(&pixels, [1, 3, 32, 32], RunOptions::default()).unwrap_err();
    assert_eq!(e.kind(), "device_lost", "{e}");
    assert!(e.to_string().contains("load the model again"), "{e}");
    // A new size needs a compile: also refused cleanly.
    assert_eq!(model.run_blocking(&pixels[..3 * 16 * 16], [1, 3, 16, 16], RunOptions::default()).unwrap_err().kind(), "device_lost");
    assert_eq!(Model::load(&gpu, &ck).err().expect("load on a lost device").kind(), "device_lost");

    let gpu2 = Gpu::from_env_blocking().unwrap();
    let model2 = Model::load(&gpu2, &ck).unwrap();
    let after = model2.run_blocking(&pixels, [1, 3, 32, 32], RunOptions::default()).unwrap().logits.unwrap().data;
    assert_eq!(before, after);
}
