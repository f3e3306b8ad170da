//! `datastore create` end to end: the image is reopened with `fatfs` and with the
//! hypervisor's own reader (`mgmt::store`), the password hash verified with `argon2` and
//! the certificate chain with `x509-parser`.

use super::*;
use std::io::Read;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xtask-datastore-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A VM file in `dir/vms/` naming a kernel and an initrd in `dir/imgs/` (relative paths),
/// and a second VM with another file of the same name.
fn vm_files(dir: &Path) -> (PathBuf, Vec<u8>) {
    std::fs::create_dir_all(dir.join("vms")).unwrap();
    std::fs::create_dir_all(dir.join("imgs/a")).unwrap();
    std::fs::create_dir_all(dir.join("imgs/b")).unwrap();
    let kernel: Vec<u8> = (0..300_000u32).map(|i| (i * 13 + i / 700) as u8).collect();
    std::fs::write(dir.join("imgs/a/Image"), &kernel).unwrap();
    std::fs::write(dir.join("imgs/b/Image"), b"other kernel").unwrap();
    std::fs::write(dir.join("imgs/initramfs.cpio.gz"), b"initrd bytes").unwrap();
    let vm = dir.join("vms/web-server.toml");
    std::fs::write(
        &vm,
        "# a comment\n[[vm]]\nname = \"web\"\nvcpus = 2\nmemory_mib = 256\n\
         kernel = \"../imgs/a/Image\"\ninitrd = \"../imgs/initramfs.cpio.gz\"\n\
         cmdline = \"console=ttyAMA0\"\n\n[[vm]]\nname = \"db\"\nvcpus = 1\n\
         memory_mib = 128\nkernel = \"../imgs/b/Image\"\n",
    )
    .unwrap();
    (vm, kernel)
}

/// The datastore partition of `img` as a `fatfs` file system.
fn open_fat(img: &Path, at: (u64, u64)) -> fatfs::FileSystem<Window> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .unwrap();
    fatfs::FileSystem::new(
        Window::new(file, at.0 * 512, at.1 * 512),
        fatfs::FsOptions::new(),
    )
    .unwrap()
}

fn read(fs: &fatfs::FileSystem<Window>, path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    fs.root_dir()
        .open_file(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn spec(d: &Path, vm: &Path) -> Spec {
    std::fs::write(d.join("extra.bin"), b"extra partition").unwrap();
    Spec {
        out: d.join("disk.img"),
        size: 80 << 20,
        vms: vec![vm.to_path_buf()],
        images: vec![(
            d.join("imgs/initramfs.cpio.gz"),
            "IMAGES/more/copy.gz".into(),
        )],
        password: "correct horse".into(),
        host_config: None,
        sans: vec!["hv.example".into()],
        extra: vec![PartSpec {
            label: "vm0-root".into(),
            bytes: 3 << 20,
            fill: Some(d.join("extra.bin")),
        }],
    }
}

#[test]
fn datastore_create_lays_out_vms_images_and_hv() {
    let d = tmp("layout");
    let (vm, kernel) = vm_files(&d);
    let spec = spec(&d, &vm);
    let made = create(&spec).unwrap();
    let parts = disk::list(&spec.out).unwrap();
    assert_eq!(parts[0].0, LABEL);
    assert_eq!((parts[0].1, parts[0].2), made.datastore);
    assert_eq!(parts[1].0, "vm0-root");
    assert_eq!(
        &disk::read_sector(&spec.out, "vm0-root", 0).unwrap()[..15],
        b"extra partition"
    );

    let fs = open_fat(&spec.out, made.datastore);
    assert_eq!(fs.fat_type(), fatfs::FatType::Fat32);
    let vm_text = String::from_utf8(read(&fs, "VMS/web-server.toml")).unwrap();
    let table: toml::Table = vm_text.parse().unwrap();
    let vms = table["vm"].as_array().unwrap();
    assert_eq!(vms[0]["kernel"].as_str(), Some("IMAGES/Image"));
    assert_eq!(vms[0]["initrd"].as_str(), Some("IMAGES/initramfs.cpio.gz"));
    assert_eq!(vms[0]["cmdline"].as_str(), Some("console=ttyAMA0"));
    // The second VM's `Image` is another file: it gets its directory's name.
    assert_eq!(vms[1]["kernel"].as_str(), Some("IMAGES/b-Image"));
    assert!(read(&fs, "IMAGES/Image") == kernel);
    assert_eq!(read(&fs, "IMAGES/b-Image"), b"other kernel");
    assert_eq!(read(&fs, "IMAGES/initramfs.cpio.gz"), b"initrd bytes");
    assert_eq!(read(&fs, "IMAGES/more/copy.gz"), b"initrd bytes");
    assert_eq!(read(&fs, "HV/HOST.TOM"), DEFAULT_HOST_CONFIG.as_bytes());
    let seed = read(&fs, "HV/SEED.BIN");
    assert_eq!(seed.len(), 64);
    assert!(seed.iter().any(|b| *b != 0));
    assert_eq!(read(&fs, "HV/CA.DER"), std::fs::read(&made.ca).unwrap());
    assert!(made.ca.to_string_lossy().ends_with("disk.img.ca.der"));
    drop(fs);
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn the_admin_password_hash_verifies_with_argon2id_at_the_documented_cost() {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let d = tmp("pwd");
    let (vm, _) = vm_files(&d);
    let spec = spec(&d, &vm);
    let made = create(&spec).unwrap();
    let fs = open_fat(&spec.out, made.datastore);
    let phc = String::from_utf8(read(&fs, "HV/ADMIN.PWD")).unwrap();
    let hash = PasswordHash::new(&phc).unwrap();
    assert_eq!(hash.algorithm.as_str(), "argon2id");
    assert!(phc.contains("m=8192,t=2,p=1"), "{phc}");
    let argon = argon2::Argon2::default();
    argon.verify_password(b"correct horse", &hash).unwrap();
    assert!(argon.verify_password(b"correct horsf", &hash).is_err());
    drop(fs);
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn the_host_certificate_chains_to_the_install_ca_and_names_the_host() {
    use x509_parser::prelude::*;
    let d = tmp("pki");
    let (vm, _) = vm_files(&d);
    let spec = spec(&d, &vm);
    let made = create(&spec).unwrap();
    let fs = open_fat(&spec.out, made.datastore);
    let ca_der = read(&fs, "HV/CA.DER");
    let cert_der = read(&fs, "HV/CERT.DER");
    let key_der = read(&fs, "HV/KEY.DER");
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    let (_, cert) = X509Certificate::from_der(&cert_der).unwrap();
    assert!(ca.is_ca());
    assert_eq!(
        ca.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "hypervisor install CA"
    );
    ca.verify_signature(None).unwrap();
    assert_eq!(cert.issuer(), ca.subject());
    cert.verify_signature(Some(ca.public_key())).unwrap();
    // A certificate signed by another key does not verify against this CA.
    let other = make_pki(vec!["localhost".into()]).unwrap();
    let (_, other_cert) = X509Certificate::from_der(&other.cert).unwrap();
    assert!(other_cert.verify_signature(Some(ca.public_key())).is_err());
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(s) => s.to_string(),
            GeneralName::IPAddress(b) => b
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("."),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(sans, ["localhost", "127.0.0.1", "10.0.2.15", "hv.example"]);
    // The key is the certificate's (PKCS#8, P-256).
    let key = rcgen::KeyPair::try_from(key_der.as_slice()).unwrap();
    assert_eq!(
        key.public_key_raw(),
        cert.public_key().subject_public_key.data.as_ref()
    );
    drop(fs);
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn the_hypervisor_store_reads_the_datastore_this_writes() {
    let d = tmp("store");
    let (vm, kernel) = vm_files(&d);
    let mut spec = spec(&d, &vm);
    spec.size = 40 << 20; // FAT16
    spec.extra.clear();
    let made = create(&spec).unwrap();
    let file = File::open(&spec.out).unwrap();
    let dev = WindowBlocks(Window::new(
        file,
        made.datastore.0 * 512,
        made.datastore.1 * 512,
    ));
    let store = mgmt::store::Store::open(dev).unwrap();
    assert_eq!(store.kind(), mgmt::store::FatKind::Fat16);
    let text = store.read("vms/web-server.toml", 1 << 16).unwrap();
    assert!(String::from_utf8(text)
        .unwrap()
        .contains("kernel = \"IMAGES/Image\""));
    assert!(store.read("IMAGES/Image", 1 << 20).unwrap() == kernel);
    assert_eq!(store.read("HV/SEED.BIN", 64).unwrap().len(), 64);
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn the_command_refuses_a_missing_or_empty_password_and_a_too_small_disk() {
    let d = tmp("refuse");
    let out = d.join("x.img").to_string_lossy().to_string();
    let cmd = |args: Vec<String>| {
        use clap::Parser;
        #[derive(Parser)]
        struct Datastore {
            #[command(subcommand)]
            cmd: Cmd,
        }
        let all = std::iter::once("datastore".to_string()).chain(args);
        super::cmd(
            Datastore::try_parse_from(all)
                .map_err(|e| e.to_string())?
                .cmd,
        )
    };
    let err = cmd(vec!["create".into(), out.clone(), "64M".into()]).unwrap_err();
    assert!(err.contains("--password-file"), "{err}");
    let pw = d.join("pw");
    std::fs::write(&pw, "\n").unwrap();
    let err = cmd(vec![
        "create".into(),
        out.clone(),
        "64M".into(),
        "--password-file".into(),
        pw.to_string_lossy().to_string(),
    ])
    .unwrap_err();
    assert!(
        err.contains("empty") && err.contains("no default password"),
        "{err}"
    );
    std::fs::write(&pw, "secret\r\n").unwrap();
    assert_eq!(read_password(&pw).unwrap(), "secret");
    let err = cmd(vec![
        "create".into(),
        out,
        "9M".into(),
        "--password-file".into(),
        pw.to_string_lossy().to_string(),
    ])
    .unwrap_err();
    assert!(err.contains("less than 8 MiB"), "{err}");
    let (vm, _) = vm_files(&d);
    let mut twice = spec(&d, &vm);
    twice
        .images
        .push((d.join("extra.bin"), "images/Image".into()));
    let err = create(&twice).unwrap_err();
    assert!(
        err.contains("two files would be written to images/Image"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(d);
}
