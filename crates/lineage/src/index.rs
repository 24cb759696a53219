//! The index itself. Everything is kept in flat vectors addressed by `u32` ids with free
//! lists, and three hash tables that hold only ids (the keys live in the vectors): a
//! million images with a few unique layers each fit in a few hundred bytes per image.
//! Links are doubly linked lists threaded through the vectors, so that removing an image
//! or a node costs O(1) however many siblings it has (a tenant pushing many images on one
//! base must not make removals quadratic).

use std::collections::VecDeque;
use std::hash::BuildHasher;

use berth_model::Digest;
use hashbrown::hash_map::Entry as MapEntry;
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use sha2::{Digest as _, Sha256};

use crate::ImageFacts;

const NONE: u32 = u32::MAX;
const ROOT: u32 = 0;

/// A digest as the index keys it: the 32 bytes of a sha256 digest, or the sha256 of the
/// text of a digest of another algorithm (flagged, so the two can never collide).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Name {
    bytes: [u8; 32],
    sha256: bool,
}

impl Name {
    fn of(digest: &Digest) -> Name {
        if digest.algorithm() == "sha256"
            && let Some(bytes) = decode_hex32(digest.encoded().as_bytes())
        {
            return Name { bytes, sha256: true };
        }
        Name { bytes: Sha256::digest(digest.as_str().as_bytes()).into(), sha256: false }
    }
}

/// 64 lowercase hex digits as 32 bytes (what a validated sha256 digest holds), by table:
/// the index turns every layer digest it is given into bytes, and the `hex` crate's
/// general decoder was a fifth of the time of a build.
fn decode_hex32(text: &[u8]) -> Option<[u8; 32]> {
    const fn value(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => 0xff,
        }
    }
    const TABLE: [u8; 256] = {
        let mut table = [0xff; 256];
        let mut c = 0;
        while c < 256 {
            table[c] = value(c as u8);
            c += 1;
        }
        table
    };
    if text.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        let (high, low) = (TABLE[pair[0] as usize], TABLE[pair[1] as usize]);
        if (high | low) & 0xf0 != 0 {
            return None;
        }
        bytes[i] = (high << 4) | low;
    }
    Some(bytes)
}

/// One distinct chain: a layer sequence from the root.
#[derive(Clone, Copy, Debug)]
struct Node {
    parent: u32,
    layer: u32,
    first_child: u32,
    prev_sibling: u32,
    next_sibling: u32,
    /// The first image whose last chain this is.
    first_image: u32,
    prev_with_layer: u32,
    next_with_layer: u32,
}

#[derive(Clone, Copy, Debug)]
struct Layer {
    name: Name,
    /// The first node that ends in this layer.
    first_node: u32,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    name: Name,
    /// The node of its last chain; `NONE` for an image without layers (a manifest list).
    node: u32,
    prev_at_node: u32,
    next_at_node: u32,
    /// The image its base annotation names.
    base: u32,
    /// Whether the image itself is indexed; an entry that is not is a placeholder for a
    /// digest a list or an annotation names.
    present: bool,
    /// How many lists and annotations name this entry.
    refs: u32,
    /// Whether `claimed_by` holds images naming this one as their base.
    claimed: bool,
    /// Whether `lists_of` holds lists this one is a child of.
    listed: bool,
}

/// What a relation rests on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum Evidence {
    /// The layers: one image's chains include the other's last chain.
    Layers,
    /// The `org.opencontainers.image.base.digest` annotation, on its own or through
    /// images related by layers.
    Annotation,
    /// Both of them.
    Both,
}

/// One image related to the one asked about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Related {
    pub image: Digest,
    pub evidence: Evidence,
    /// The related image has exactly the same layers (only its config differs), so layers
    /// alone cannot say which of the two was built on the other.
    pub same_layers: bool,
    /// When the image asked about is a manifest list: the platform of the child through
    /// which the relation runs.
    pub platform: Option<String>,
}

/// A chain the index holds, valid while [`Index::changes`] stays the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChainRef(u32);

/// The chain index. See the crate documentation.
pub struct Index {
    hasher: DefaultHashBuilder,
    nodes: Vec<Node>,
    free_nodes: Vec<u32>,
    /// Node ids keyed by `(parent, layer name)`.
    children: HashTable<u32>,
    layers: Vec<Layer>,
    free_layers: Vec<u32>,
    /// Layer ids keyed by name.
    layer_ids: HashTable<u32>,
    images: Vec<Entry>,
    free_images: Vec<u32>,
    /// Image ids keyed by name.
    image_ids: HashTable<u32>,
    /// A manifest list's children with their platforms.
    list_children: HashMap<u32, Box<[(u32, u16)]>>,
    /// The lists a manifest is a child of.
    lists_of: HashMap<u32, Vec<u32>>,
    /// The images whose base annotation names an image.
    claimed_by: HashMap<u32, Vec<u32>>,
    platforms: Vec<Box<str>>,
    platform_ids: HashMap<Box<str>, u16>,
    /// Digests of algorithms other than sha256, whose names cannot be turned back.
    other_digests: HashMap<Name, Digest>,
    present: usize,
    changes: u64,
}

impl Default for Index {
    fn default() -> Index {
        Index::new()
    }
}

/// The OCI ChainIDs of a layer sequence, over the layer digests.
pub fn chain_ids(layers: &[Digest]) -> Vec<String> {
    let mut chains: Vec<String> = Vec::with_capacity(layers.len());
    for layer in layers {
        let chain = match chains.last() {
            None => layer.to_string(),
            Some(previous) => Digest::sha256_of(format!("{previous} {layer}").as_bytes()).to_string(),
        };
        chains.push(chain);
    }
    chains
}

impl Index {
    pub fn new() -> Index {
        let root = Node {
            parent: NONE,
            layer: NONE,
            first_child: NONE,
            prev_sibling: NONE,
            next_sibling: NONE,
            first_image: NONE,
            prev_with_layer: NONE,
            next_with_layer: NONE,
        };
        Index {
            hasher: DefaultHashBuilder::default(),
            nodes: vec![root],
            free_nodes: Vec::new(),
            children: HashTable::new(),
            layers: Vec::new(),
            free_layers: Vec::new(),
            layer_ids: HashTable::new(),
            images: Vec::new(),
            free_images: Vec::new(),
            image_ids: HashTable::new(),
            list_children: HashMap::new(),
            lists_of: HashMap::new(),
            claimed_by: HashMap::new(),
            platforms: Vec::new(),
            platform_ids: HashMap::new(),
            other_digests: HashMap::new(),
            present: 0,
            changes: 0,
        }
    }

    /// How many images are indexed.
    pub fn len(&self) -> usize {
        self.present
    }

    pub fn is_empty(&self) -> bool {
        self.present == 0
    }

    /// How many distinct chains the indexed images have.
    pub fn chain_count(&self) -> usize {
        self.nodes.len() - 1 - self.free_nodes.len()
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.present_id(digest).is_some()
    }

    /// Indexes an image. Images never change, so indexing one again changes nothing;
    /// returns whether the image is new to the index.
    pub fn insert(&mut self, facts: &ImageFacts) -> bool {
        let id = self.entry_for(&facts.digest);
        if self.images[id as usize].present {
            return false;
        }
        if !facts.layers.is_empty() {
            let mut node = ROOT;
            for layer in &facts.layers {
                node = self.child_for(node, layer);
            }
            let first = self.nodes[node as usize].first_image;
            if first != NONE {
                self.images[first as usize].prev_at_node = id;
            }
            let entry = &mut self.images[id as usize];
            entry.node = node;
            entry.prev_at_node = NONE;
            entry.next_at_node = first;
            self.nodes[node as usize].first_image = id;
        }
        if !facts.manifests.is_empty() {
            let mut children = Vec::with_capacity(facts.manifests.len());
            for (child, platform) in &facts.manifests {
                let child = self.entry_for(child);
                self.images[child as usize].refs += 1;
                self.images[child as usize].listed = true;
                self.lists_of.entry(child).or_default().push(id);
                children.push((child, self.platform_for(platform)));
            }
            self.list_children.insert(id, children.into_boxed_slice());
        }
        if let Some(base) = &facts.base {
            let base = self.entry_for(base);
            self.images[base as usize].refs += 1;
            self.images[base as usize].claimed = true;
            self.images[id as usize].base = base;
            self.claimed_by.entry(base).or_default().push(id);
        }
        self.images[id as usize].present = true;
        self.present += 1;
        self.changes += 1;
        true
    }

    /// Removes an image from the index; returns whether it was there. Chains no image
    /// holds any longer go with it.
    pub fn remove(&mut self, digest: &Digest) -> bool {
        let Some(id) = self.present_id(digest) else { return false };
        let entry = self.images[id as usize];
        if entry.node != NONE {
            if entry.prev_at_node == NONE {
                self.nodes[entry.node as usize].first_image = entry.next_at_node;
            } else {
                self.images[entry.prev_at_node as usize].next_at_node = entry.next_at_node;
            }
            if entry.next_at_node != NONE {
                self.images[entry.next_at_node as usize].prev_at_node = entry.prev_at_node;
            }
            self.prune(entry.node);
        }
        if let Some(children) = self.list_children.remove(&id) {
            for &(child, _) in children.iter() {
                if let MapEntry::Occupied(mut lists) = self.lists_of.entry(child) {
                    if let Some(at) = lists.get().iter().position(|&list| list == id) {
                        lists.get_mut().swap_remove(at);
                    }
                    if lists.get().is_empty() {
                        lists.remove();
                        self.images[child as usize].listed = false;
                    }
                }
                self.release(child);
            }
        }
        if entry.base != NONE {
            if let MapEntry::Occupied(mut claims) = self.claimed_by.entry(entry.base) {
                if let Some(at) = claims.get().iter().position(|&claim| claim == id) {
                    claims.get_mut().swap_remove(at);
                }
                if claims.get().is_empty() {
                    claims.remove();
                    self.images[entry.base as usize].claimed = false;
                }
            }
            self.release(entry.base);
        }
        let entry = &mut self.images[id as usize];
        entry.node = NONE;
        entry.base = NONE;
        entry.present = false;
        self.present -= 1;
        self.changes += 1;
        self.free_if_unused(id);
        true
    }

    /// The images this image is built on, nearest first.
    pub fn ancestors(&self, digest: &Digest) -> Option<Vec<Related>> {
        self.related(digest, Direction::Ancestors)
    }

    /// The images built on this image.
    pub fn descendants(&self, digest: &Digest) -> Option<Vec<Related>> {
        self.related(digest, Direction::Descendants)
    }

    /// The indexed images that hold a layer.
    pub fn with_layer(&self, layer: &Digest) -> Vec<Digest> {
        let Some(layer) = self.layer_id(layer) else { return Vec::new() };
        let mut found = Vec::new();
        let mut node = self.layers[layer as usize].first_node;
        while node != NONE {
            self.subtree_images(node, true, &mut found);
            node = self.nodes[node as usize].next_with_layer;
        }
        // A layer twice in one image puts a node of it inside another's subtree.
        found.sort_unstable();
        found.dedup();
        found.into_iter().map(|id| self.digest(id)).collect()
    }

    /// The chain `last_chain`, which ends in `last_layer` (a chain cannot be turned back
    /// into layers, so the caller names its last layer too), when an indexed image holds
    /// it.
    pub fn find_chain(&self, last_layer: &Digest, last_chain: &str) -> Option<ChainRef> {
        let layer = self.layer_id(last_layer)?;
        let mut node = self.layers[layer as usize].first_node;
        while node != NONE {
            if self.chain_of(node).last().is_some_and(|chain| chain == last_chain) {
                return Some(ChainRef(node));
            }
            node = self.nodes[node as usize].next_with_layer;
        }
        None
    }

    /// The indexed images that hold `chain`: the image it is the last chain of, and
    /// everything built on it, nearest first.
    pub fn images_with_chain(&self, chain: ChainRef) -> Vec<Digest> {
        let mut found = Vec::new();
        self.subtree_images(chain.0, true, &mut found);
        found.into_iter().map(|id| self.digest(id)).collect()
    }

    /// The chains an indexed image holds, its last chain first.
    pub fn chain_refs(&self, digest: &Digest) -> Vec<ChainRef> {
        let mut refs = Vec::new();
        if let Some(id) = self.present_id(digest) {
            let mut node = self.images[id as usize].node;
            while node != NONE && node != ROOT {
                refs.push(ChainRef(node));
                node = self.nodes[node as usize].parent;
            }
        }
        refs
    }

    /// How many times the index has changed: a [`ChainRef`] found before the count moved
    /// may name another chain since.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// An indexed image's layers, base first.
    pub fn layers(&self, digest: &Digest) -> Option<Vec<Digest>> {
        let id = self.present_id(digest)?;
        let mut node = self.images[id as usize].node;
        let mut layers = Vec::new();
        while node != NONE && node != ROOT {
            layers.push(self.layer_digest(self.nodes[node as usize].layer));
            node = self.nodes[node as usize].parent;
        }
        layers.reverse();
        Some(layers)
    }

    /// An indexed image's chains, first to last.
    pub fn chains(&self, digest: &Digest) -> Option<Vec<String>> {
        let id = self.present_id(digest)?;
        let node = self.images[id as usize].node;
        Some(if node == NONE { Vec::new() } else { self.chain_of(node) })
    }

    /// The indexed manifest lists an image is a child of, with its platform in each.
    pub fn lists_containing(&self, digest: &Digest) -> Vec<(Digest, String)> {
        let Some(id) = self.id(&Name::of(digest)) else { return Vec::new() };
        let mut lists = Vec::new();
        for &list in self.lists_of.get(&id).map(Vec::as_slice).unwrap_or_default() {
            for &(child, platform) in self.list_children[&list].iter() {
                if child == id {
                    lists.push((self.digest(list), self.platforms[platform as usize].to_string()));
                }
            }
        }
        lists
    }

    /// The children of an indexed manifest list, with their platforms.
    pub fn list_children(&self, digest: &Digest) -> Vec<(Digest, String)> {
        let Some(id) = self.present_id(digest) else { return Vec::new() };
        self.list_children
            .get(&id)
            .map(|children| {
                children.iter().map(|&(child, platform)| (self.digest(child), self.platforms[platform as usize].to_string())).collect()
            })
            .unwrap_or_default()
    }

    fn related(&self, digest: &Digest, direction: Direction) -> Option<Vec<Related>> {
        let id = self.present_id(digest)?;
        let starts: Vec<(u32, Option<u16>)> = match self.list_children.get(&id) {
            Some(children) => children
                .iter()
                .filter(|&&(child, _)| self.images[child as usize].present)
                .map(|&(child, platform)| (child, Some(platform)))
                .collect(),
            None => vec![(id, None)],
        };
        let mut answer: Vec<Related> = Vec::new();
        for (start, platform) in starts {
            // By layers, from the start itself, nearest first.
            let mut by_layers = Vec::new();
            self.layer_relatives(start, direction, &mut by_layers);
            // By annotation: any path that takes at least one annotation step, from the
            // start or from what its layers relate it to; layer steps may follow. Most
            // images carry no annotation and are in no list: their flags say so without
            // a look-up.
            let mut queue: VecDeque<u32> = VecDeque::new();
            let mut seen: hashbrown::HashSet<u32> = hashbrown::HashSet::new();
            let mut push = |next: u32| {
                if seen.insert(next) {
                    queue.push_back(next);
                }
            };
            self.annotation_steps(start, direction, &mut push);
            self.annotation_steps(id, direction, &mut push);
            for &(other, _) in &by_layers {
                self.annotation_steps(other, direction, &mut push);
            }
            let mut by_annotation: Vec<u32> = Vec::new();
            while let Some(next) = queue.pop_front() {
                by_annotation.push(next);
                let mut more = Vec::new();
                self.layer_relatives(next, direction, &mut more);
                let mut step = |other: u32| {
                    if seen.insert(other) {
                        queue.push_back(other);
                    }
                };
                for (other, _) in more {
                    step(other);
                }
                self.annotation_steps(next, direction, &mut step);
            }
            let also_annotated: hashbrown::HashSet<u32> = by_annotation.iter().copied().collect();
            let platform = platform.map(|p| self.platforms[p as usize].to_string());
            let mut emitted: hashbrown::HashSet<u32> = hashbrown::HashSet::new();
            let mut emit = |other: u32, evidence: Evidence, same_layers: bool| {
                if other == start || other == id || !self.images[other as usize].present {
                    return;
                }
                if !also_annotated.is_empty() && !emitted.insert(other) {
                    return;
                }
                answer.push(Related { image: self.digest(other), evidence, same_layers, platform: platform.clone() });
            };
            for &(other, same) in &by_layers {
                let evidence = if also_annotated.contains(&other) { Evidence::Both } else { Evidence::Layers };
                emit(other, evidence, same);
            }
            for other in by_annotation {
                emit(other, Evidence::Annotation, false);
            }
        }
        Some(answer)
    }

    /// Images related to `id` by layers alone, nearest first, with whether they have its
    /// exact layers.
    fn layer_relatives(&self, id: u32, direction: Direction, out: &mut Vec<(u32, bool)>) {
        let node = self.images[id as usize].node;
        if node == NONE {
            return;
        }
        self.images_at(node, |other| {
            if other != id {
                out.push((other, true));
            }
        });
        match direction {
            Direction::Ancestors => {
                let mut up = self.nodes[node as usize].parent;
                while up != NONE {
                    self.images_at(up, |other| out.push((other, false)));
                    up = self.nodes[up as usize].parent;
                }
            }
            Direction::Descendants => {
                let mut below = Vec::new();
                self.subtree_images(node, false, &mut below);
                out.extend(below.into_iter().map(|other| (other, false)));
            }
        }
    }

    /// One annotation step from `id`, and from the lists it is a child of (an annotation
    /// may name a list).
    fn annotation_steps(&self, id: u32, direction: Direction, step: &mut impl FnMut(u32)) {
        let entry = &self.images[id as usize];
        match direction {
            Direction::Ancestors => {
                if entry.base != NONE {
                    step(entry.base);
                }
            }
            Direction::Descendants => {
                let mut claims_of = |one: u32| {
                    if self.images[one as usize].claimed {
                        for &claim in self.claimed_by.get(&one).map(Vec::as_slice).unwrap_or_default() {
                            step(claim);
                        }
                    }
                };
                claims_of(id);
                if entry.listed {
                    for &list in self.lists_of.get(&id).map(Vec::as_slice).unwrap_or_default() {
                        claims_of(list);
                    }
                }
            }
        }
    }

    fn images_at(&self, node: u32, mut each: impl FnMut(u32)) {
        let mut image = self.nodes[node as usize].first_image;
        while image != NONE {
            each(image);
            image = self.images[image as usize].next_at_node;
        }
    }

    /// Every image below `node` (and at it, when `inclusive`), nearest first: breadth
    /// first, without recursion (chains can be deep).
    fn subtree_images(&self, node: u32, inclusive: bool, out: &mut Vec<u32>) {
        let mut queue = VecDeque::new();
        if inclusive {
            queue.push_back(node);
        } else {
            self.children_of(node, |child| queue.push_back(child));
        }
        while let Some(node) = queue.pop_front() {
            self.images_at(node, |image| out.push(image));
            self.children_of(node, |child| queue.push_back(child));
        }
    }

    fn children_of(&self, node: u32, mut each: impl FnMut(u32)) {
        let mut child = self.nodes[node as usize].first_child;
        while child != NONE {
            each(child);
            child = self.nodes[child as usize].next_sibling;
        }
    }

    fn chain_of(&self, mut node: u32) -> Vec<String> {
        let mut layers = Vec::new();
        while node != ROOT {
            layers.push(self.layer_digest(self.nodes[node as usize].layer));
            node = self.nodes[node as usize].parent;
        }
        layers.reverse();
        chain_ids(&layers)
    }

    fn digest_of(&self, name: &Name) -> Digest {
        if name.sha256 { Digest::from_sha256(&name.bytes) } else { self.other_digests[name].clone() }
    }

    fn digest(&self, id: u32) -> Digest {
        self.digest_of(&self.images[id as usize].name)
    }

    fn layer_digest(&self, layer: u32) -> Digest {
        self.digest_of(&self.layers[layer as usize].name)
    }

    fn remember(&mut self, name: Name, digest: &Digest) {
        if !name.sha256 {
            self.other_digests.entry(name).or_insert_with(|| digest.clone());
        }
    }

    fn id(&self, name: &Name) -> Option<u32> {
        let hash = self.hasher.hash_one(name);
        self.image_ids.find(hash, |&id| self.images[id as usize].name == *name).copied()
    }

    fn present_id(&self, digest: &Digest) -> Option<u32> {
        self.id(&Name::of(digest)).filter(|&id| self.images[id as usize].present)
    }

    /// The entry of a digest, made as a placeholder when the index has none.
    fn entry_for(&mut self, digest: &Digest) -> u32 {
        let name = Name::of(digest);
        if let Some(id) = self.id(&name) {
            return id;
        }
        self.remember(name, digest);
        let entry = Entry {
            name,
            node: NONE,
            prev_at_node: NONE,
            next_at_node: NONE,
            base: NONE,
            present: false,
            refs: 0,
            claimed: false,
            listed: false,
        };
        let id = allocate(&mut self.images, &mut self.free_images, entry);
        let hash = self.hasher.hash_one(name);
        let (images, hasher) = (&self.images, &self.hasher);
        self.image_ids.insert_unique(hash, id, |&other| hasher.hash_one(images[other as usize].name));
        id
    }

    fn release(&mut self, id: u32) {
        self.images[id as usize].refs -= 1;
        self.free_if_unused(id);
    }

    fn free_if_unused(&mut self, id: u32) {
        let entry = self.images[id as usize];
        if entry.present || entry.refs > 0 {
            return;
        }
        let hash = self.hasher.hash_one(entry.name);
        if let Ok(found) = self.image_ids.find_entry(hash, |&other| other == id) {
            found.remove();
        }
        if !entry.name.sha256 {
            self.other_digests.remove(&entry.name);
        }
        self.free_images.push(id);
    }

    fn layer_id(&self, digest: &Digest) -> Option<u32> {
        let name = Name::of(digest);
        let hash = self.hasher.hash_one(name);
        self.layer_ids.find(hash, |&id| self.layers[id as usize].name == name).copied()
    }

    fn layer_for(&mut self, digest: &Digest) -> u32 {
        if let Some(id) = self.layer_id(digest) {
            return id;
        }
        let name = Name::of(digest);
        self.remember(name, digest);
        let layer = Layer { name, first_node: NONE };
        let id = allocate(&mut self.layers, &mut self.free_layers, layer);
        let hash = self.hasher.hash_one(name);
        let (layers, hasher) = (&self.layers, &self.hasher);
        self.layer_ids.insert_unique(hash, id, |&other| hasher.hash_one(layers[other as usize].name));
        id
    }

    /// The child of `parent` that ends in `layer`, made when there is none. Children are
    /// keyed by the layer's name, so that walking an existing chain needs no look-up in
    /// the layer table.
    fn child_for(&mut self, parent: u32, digest: &Digest) -> u32 {
        let name = Name::of(digest);
        let hash = self.hasher.hash_one((parent, name));
        let (nodes, layers) = (&self.nodes, &self.layers);
        let found = self.children.find(hash, |&n| {
            let node = &nodes[n as usize];
            node.parent == parent && layers[node.layer as usize].name == name
        });
        if let Some(&child) = found {
            return child;
        }
        let layer = self.layer_for(digest);
        let next_sibling = self.nodes[parent as usize].first_child;
        let next_with_layer = self.layers[layer as usize].first_node;
        let node = Node {
            parent,
            layer,
            first_child: NONE,
            prev_sibling: NONE,
            next_sibling,
            first_image: NONE,
            prev_with_layer: NONE,
            next_with_layer,
        };
        let id = allocate(&mut self.nodes, &mut self.free_nodes, node);
        if next_sibling != NONE {
            self.nodes[next_sibling as usize].prev_sibling = id;
        }
        self.nodes[parent as usize].first_child = id;
        if next_with_layer != NONE {
            self.nodes[next_with_layer as usize].prev_with_layer = id;
        }
        self.layers[layer as usize].first_node = id;
        let (nodes, layers, hasher) = (&self.nodes, &self.layers, &self.hasher);
        self.children.insert_unique(hash, id, |&n| {
            let node = &nodes[n as usize];
            hasher.hash_one((node.parent, layers[node.layer as usize].name))
        });
        id
    }

    /// Removes `node` and then its ancestors while they hold no image and no child.
    fn prune(&mut self, mut node: u32) {
        while node != ROOT {
            let n = self.nodes[node as usize];
            if n.first_image != NONE || n.first_child != NONE {
                return;
            }
            if n.prev_sibling == NONE {
                self.nodes[n.parent as usize].first_child = n.next_sibling;
            } else {
                self.nodes[n.prev_sibling as usize].next_sibling = n.next_sibling;
            }
            if n.next_sibling != NONE {
                self.nodes[n.next_sibling as usize].prev_sibling = n.prev_sibling;
            }
            if n.prev_with_layer == NONE {
                self.layers[n.layer as usize].first_node = n.next_with_layer;
            } else {
                self.nodes[n.prev_with_layer as usize].next_with_layer = n.next_with_layer;
            }
            if n.next_with_layer != NONE {
                self.nodes[n.next_with_layer as usize].prev_with_layer = n.prev_with_layer;
            }
            let hash = self.hasher.hash_one((n.parent, self.layers[n.layer as usize].name));
            if let Ok(found) = self.children.find_entry(hash, |&other| other == node) {
                found.remove();
            }
            self.free_nodes.push(node);
            if self.layers[n.layer as usize].first_node == NONE {
                self.free_layer(n.layer);
            }
            node = n.parent;
        }
    }

    fn free_layer(&mut self, layer: u32) {
        let name = self.layers[layer as usize].name;
        let hash = self.hasher.hash_one(name);
        if let Ok(found) = self.layer_ids.find_entry(hash, |&other| other == layer) {
            found.remove();
        }
        if !name.sha256 {
            self.other_digests.remove(&name);
        }
        self.free_layers.push(layer);
    }

    fn platform_for(&mut self, platform: &str) -> u16 {
        if let Some(&id) = self.platform_ids.get(platform) {
            return id;
        }
        // Platforms are few (os/arch/variant); a list naming more than u16 distinct ones
        // shares the last id rather than failing.
        let id = u16::try_from(self.platforms.len()).unwrap_or(u16::MAX);
        if id < u16::MAX {
            self.platforms.push(platform.into());
            self.platform_ids.insert(platform.into(), id);
        }
        id.min(self.platforms.len().saturating_sub(1) as u16)
    }
}

/// Stores `value` in a free slot of `slots`, or a new one; returns its id.
fn allocate<T>(slots: &mut Vec<T>, free: &mut Vec<u32>, value: T) -> u32 {
    match free.pop() {
        Some(id) => {
            slots[id as usize] = value;
            id
        }
        None => {
            slots.push(value);
            (slots.len() - 1) as u32
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Ancestors,
    Descendants,
}

#[cfg(test)]
mod tests;
