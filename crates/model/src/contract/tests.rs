use serde_json::json;

use super::deployment::{self, Template};
use super::*;

fn image(config: Value) -> Image {
    Image { docker_image_metadata: Some(json!({"Config": config, "Os": "linux", "Architecture": "amd64"})), ..Image::default() }
}

fn base() -> Value {
    json!({
        "Env": ["PATH=/usr/bin", "MODE=prod", "APP_VERSION=1.2.0"],
        "ExposedPorts": {"8080/tcp": {}},
        "Volumes": {"/data": {}},
        "Labels": {"v": "1"},
        "User": "1001",
        "WorkingDir": "/app",
        "Entrypoint": ["/app/run"],
        "Cmd": ["--serve"],
    })
}

/// `change` applied to the base config, then the verdict and the (field, key, kind) of
/// each change.
fn check(change: impl FnOnce(&mut Value), verdict: Verdict, expect: &[(&str, &str, ChangeKind)]) {
    let mut after = base();
    change(&mut after);
    let changes = diff(&Contract::of_image(&image(base())), &Contract::of_image(&image(after)));
    let seen: Vec<(&str, &str, ChangeKind)> = changes.changes.iter().map(|c| (c.field.as_str(), c.key.as_str(), c.change)).collect();
    assert_eq!(seen, expect, "{changes:#?}");
    assert_eq!(changes.verdict, verdict, "{changes:#?}");
    assert!(changes.changes.iter().all(|c| !c.reason.is_empty()));
}

#[test]
fn each_kind_of_change_has_its_verdict() {
    use ChangeKind::*;
    use Verdict::*;
    check(|_| {}, Compatible, &[]);
    check(|c| c["ExposedPorts"]["8443/tcp"] = json!({}), Compatible, &[("ports", "8443/tcp", Added)]);
    check(|c| c["ExposedPorts"] = json!({}), Breaking, &[("ports", "8080/tcp", Removed)]);
    check(|c| c["Env"].as_array_mut().unwrap().push(json!("NEW=1")), Compatible, &[("env", "NEW", Added)]);
    check(|c| c["Env"] = json!(["PATH=/usr/bin", "APP_VERSION=1.2.0"]), Breaking, &[("env", "MODE", Removed)]);
    check(|c| c["Env"][1] = json!("MODE=dev"), Breaking, &[("env", "MODE", Changed)]);
    check(|c| c["Env"][2] = json!("APP_VERSION=1.3.0"), Compatible, &[("env", "APP_VERSION", Changed)]);
    check(|c| c["Env"][0] = json!("PATH=/opt/bin:/usr/bin"), Compatible, &[("env", "PATH", Changed)]);
    check(|c| c["Env"][0] = json!("PATH=/opt/bin"), Breaking, &[("env", "PATH", Changed)]);
    check(|c| c["Labels"]["v"] = json!("2"), Compatible, &[("labels", "v", Changed)]);
    check(|c| c["Volumes"] = json!({}), Breaking, &[("volumes", "/data", Removed)]);
    check(|c| c["Volumes"] = json!({"/var/data": {}}), Breaking, &[("volumes", "/data", Removed), ("volumes", "/var/data", Added)]);
    check(|c| c["User"] = json!("root"), Breaking, &[("user", "", Changed)]);
    check(|c| c["WorkingDir"] = json!("/srv"), Breaking, &[("workingDir", "", Changed)]);
    check(|c| c["Entrypoint"] = json!(["/bin/sh"]), Breaking, &[("entrypoint", "", Changed)]);
    check(|c| c["Cmd"] = json!(["--debug"]), Compatible, &[("cmd", "", Changed)]);
}

#[test]
fn a_platform_change_breaks() {
    let before = image(base());
    let mut after = image(base());
    after.docker_image_metadata.as_mut().unwrap()["Architecture"] = json!("arm64");
    let changes = diff(&Contract::of_image(&before), &Contract::of_image(&after));
    assert_eq!(changes.verdict, Verdict::Breaking);
    assert_eq!((changes.changes[0].from.as_deref(), changes.changes[0].to.as_deref()), (Some("linux/amd64"), Some("linux/arm64")));
}

#[test]
fn overrides_set_change_and_remove_and_a_tag_lays_over_its_stream() {
    let stream = Overrides::parse(r#"{"env":{"MODE":"dev","LOG":"debug"},"ports":{"add":["9090"]},"user":"2000"}"#, "x").unwrap();
    let tag = Overrides::parse(
        r#"{"env":{"LOG":null,"PATH":null},"ports":{"remove":["8080/tcp"]},"volumes":{"add":["/cache"]},"labels":{"v":null},"cmd":["--fast"],"resources":{"requests":{"cpu":"250m"},"limits":{"memory":"512Mi"}}}"#,
        "x",
    )
    .unwrap();
    let effective = Contract::of_image(&image(base())).with(&stream.layered(&tag));
    assert_eq!(effective.env, BTreeMap::from([("APP_VERSION".into(), "1.2.0".into()), ("MODE".into(), "dev".into())]));
    assert_eq!(effective.ports, BTreeSet::from(["9090/tcp".to_string()]));
    assert_eq!(effective.volumes, BTreeSet::from(["/cache".to_string(), "/data".to_string()]));
    assert!(effective.labels.is_empty());
    assert_eq!((effective.user.as_str(), effective.cmd.as_slice()), ("2000", ["--fast".to_string()].as_slice()));
    assert_eq!(effective.resources.requests["cpu"], "250m");
}

#[test]
fn overrides_that_make_no_sense_are_refused_with_the_field() {
    for (text, field) in [
        (r#"{"env":{"A=B":"1"}}"#, "o.env"),
        (r#"{"ports":{"add":["http"]}}"#, "o.ports"),
        (r#"{"volumes":{"add":["data"]}}"#, "o.volumes"),
        (r#"{"resources":{"limits":{"gpu":"1"}}}"#, "o.resources.limits"),
        (r#"{"resources":{"limits":{"memory":"lots"}}}"#, "o.resources.limits.memory"),
        (r#"{"envs":{}}"#, "o"),
        ("not json", "o"),
    ] {
        let errors = Overrides::parse(text, "o").unwrap_err();
        assert_eq!(errors[0].field, field, "{text}: {errors:?}");
    }
}

#[test]
fn a_generated_deployment_fits_its_own_image_and_a_removed_port_does_not() {
    let contract = Contract::of_image(&image(base())).with(&Overrides::parse(r#"{"resources":{"requests":{"cpu":"100m"}}}"#, "o").unwrap());
    let template = Template { name: "web", replicas: 2, image: "r.example/ns/app@sha256:1", source: "ns/app:1", contract: &contract };
    let generated = deployment::deployment(&template);
    assert_eq!(generated["spec"]["template"]["spec"]["volumes"], json!([{"name": "data", "emptyDir": {}}]));
    assert_eq!(generated["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"], 1001);
    assert_eq!(deployment::service(&template).unwrap()["spec"]["ports"][0]["port"], 8080);
    let fits = deployment::check(&generated, "app", &contract).unwrap();
    assert!(fits.changes.is_empty(), "{fits:#?}");
    let mut newer = contract.clone();
    newer.ports = BTreeSet::from(["8443/tcp".to_string()]);
    let check = deployment::check(&generated, "app", &newer).unwrap();
    assert_eq!(check.verdict, Verdict::Breaking);
    assert!(check.changes.iter().any(|c| c.field == "ports" && c.key == "8080/tcp" && c.change == ChangeKind::Removed));
}

#[test]
fn volume_names_are_dns_labels() {
    assert_eq!(deployment::volume_name("/var/lib/My_Data/"), "var-lib-my-data");
    assert_eq!(deployment::volume_name("/"), "root");
}

#[test]
fn diff_sides_are_revisions_or_images_and_default_to_the_last_two() {
    use crate::imagestream::{NamedTagEventList, TagEvent};
    let event = |image: &str| TagEvent {
        created: crate::Time::from_datetime(chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap()),
        docker_image_reference: format!("r.example/app@{image}"),
        image: image.to_string(),
        generation: 1,
        cause: String::new(),
    };
    let mut stream = ImageStream::default();
    stream.metadata.name = "app".into();
    stream.status.tags.push(NamedTagEventList {
        tag: "1".into(),
        items: vec![event("sha256:c"), event("sha256:b"), event("sha256:a")],
        conditions: vec![],
    });
    stream.status.tags.push(NamedTagEventList { tag: "2".into(), items: vec![event("sha256:z")], conditions: vec![] });
    let (from, to) = pick_sides(&stream, "1", None, None).unwrap();
    assert_eq!((from.revision, from.image.as_str(), to.revision, to.image.as_str()), (Some(2), "sha256:b", Some(3), "sha256:c"));
    let (from, to) = pick_sides(&stream, "1", Some("1"), None).unwrap();
    assert_eq!((from.image.as_str(), to.image.as_str()), ("sha256:a", "sha256:c"));
    // An image of another tag of the stream has no revision of this tag.
    let (from, _) = pick_sides(&stream, "1", Some("sha256:z"), None).unwrap();
    assert_eq!((from.revision, from.image.as_str()), (None, "sha256:z"));
    assert!(pick_sides(&stream, "1", Some("4"), None).unwrap_err().contains("revisions 1 to 3"));
    assert!(pick_sides(&stream, "2", None, None).unwrap_err().contains("no image before revision 1"));
    assert!(pick_sides(&stream, "3", None, None).unwrap_err().contains("no image yet"));
    assert!(pick_sides(&stream, "1", Some("sha256:q"), None).unwrap_err().contains("neither a revision"));
}
