// Laying out the namespace (see tree.hpp for the inode layout), and the
// single-file tree.
#include "stfs/namespace/tree.hpp"

#include <algorithm>
#include <cerrno>
#include <map>
#include <spdlog/spdlog.h>

#include "tree_builder.hpp"

namespace stfs {

Ino Tree::find_child(Ino parent, std::string_view name) const {
  const Node* dir = node(parent);
  if (!dir || dir->kind != NodeKind::kDir) return 0;
  auto begin = nodes_.begin() + static_cast<std::ptrdiff_t>(dir->first_child - 1);
  auto end = begin + static_cast<std::ptrdiff_t>(dir->child_count);
  auto it = std::lower_bound(begin, end, name,
                             [](const Node& n, std::string_view key) { return n.name < key; });
  if (it == end || it->name != name) return 0;
  return it->ino;
}

TreeBuilder::TreeBuilder(const AttrOptions& attr, const struct stat& root_stat,
                         const ViewOptions& views)
    : views_(views) {
  tree_.attr_ = attr;
  tree_.stats_.push_back(root_stat);
  Draft root;
  root.node.kind = NodeKind::kDir;
  drafts_.push_back(std::move(root));
}

std::uint32_t TreeBuilder::add_source(std::shared_ptr<const Model> m, mode_t perm) {
  tree_.models_.push_back(std::move(m));
  tree_.perms_.push_back(perm & 0777);
  return static_cast<std::uint32_t>(tree_.models_.size() - 1);
}

std::uint32_t TreeBuilder::add_stat(const struct stat& st, mode_t perm) {
  tree_.stats_.push_back(st);
  tree_.stats_.back().st_mode = (st.st_mode & S_IFMT) | (perm & 0777);
  return static_cast<std::uint32_t>(tree_.stats_.size() - 1);
}

std::uint32_t TreeBuilder::add_model_stat(std::uint32_t i) {
  return add_stat(tree_.models_[i]->st(), tree_.perms_[i]);
}

std::string_view TreeBuilder::keep(std::string name) {
  return tree_.name_store_.emplace_back(std::move(name));
}

TreeBuilder::Id TreeBuilder::add_dir(Id parent, std::string name, std::uint32_t stat) {
  Draft d;
  d.name = keep(std::move(name));
  d.node.kind = NodeKind::kDir;
  d.node.stat = stat;
  drafts_.push_back(std::move(d));
  Id id = static_cast<Id>(drafts_.size() - 1);
  drafts_[parent].kids.push_back(id);
  return id;
}

void TreeBuilder::add_blob(Id parent, std::string name, std::string content, std::uint32_t stat) {
  Draft d;
  d.name = keep(std::move(name));
  d.node.kind = NodeKind::kBlob;
  d.node.index = static_cast<std::uint32_t>(tree_.blobs_.size());
  d.node.size = content.size();
  d.node.stat = stat;
  tree_.blobs_.push_back(std::move(content));
  drafts_.push_back(std::move(d));
  drafts_[parent].kids.push_back(static_cast<Id>(drafts_.size() - 1));
}

void TreeBuilder::add_file(Id parent, std::string name, std::uint32_t source, std::uint32_t stat) {
  Draft d;
  d.name = keep(std::move(name));
  d.node.kind = NodeKind::kFile;
  d.node.model = source;
  d.node.size = static_cast<std::uint64_t>(tree_.models_[source]->st().st_size);
  d.node.stat = stat;
  drafts_.push_back(std::move(d));
  drafts_[parent].kids.push_back(static_cast<Id>(drafts_.size() - 1));
}

void TreeBuilder::add_packed(Id parent, std::string name, std::string head,
                             std::vector<PackedSegment> segments, std::uint32_t stat) {
  Draft d;
  d.name = keep(std::move(name));
  d.node.kind = NodeKind::kPacked;
  d.node.index = static_cast<std::uint32_t>(tree_.packed_.size());
  d.node.blob = static_cast<std::uint32_t>(tree_.blobs_.size());
  d.node.size = head.size();
  for (const PackedSegment& g : segments) d.node.size += g.size;
  d.node.stat = stat;
  tree_.blobs_.push_back(std::move(head));
  tree_.packed_.push_back(std::move(segments));
  drafts_.push_back(std::move(d));
  drafts_[parent].kids.push_back(static_cast<Id>(drafts_.size() - 1));
}

namespace {

// FNV-1a over more bytes.
std::uint64_t mix(std::uint64_t h, const void* p, std::size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= b[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

// A source file's identity (device, inode, mtime, size) into the hash.
std::uint64_t mix_identity(std::uint64_t h, const struct stat& st) {
  for (auto v : {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
                 static_cast<std::uint64_t>(st.st_mtim.tv_sec),
                 static_cast<std::uint64_t>(st.st_mtim.tv_nsec),
                 static_cast<std::uint64_t>(st.st_size)}) {
    h = mix(h, &v, sizeof v);
  }
  return h;
}

}  // namespace

Result<void> TreeBuilder::hash_inodes() {
  Tree& t = tree_;
  t.hashed_ = true;
  std::vector<std::string> paths(t.nodes_.size());
  t.by_ino_.reserve(t.nodes_.size());
  for (std::size_t pos = 0; pos < t.nodes_.size(); ++pos) {
    Node& n = t.nodes_[pos];
    if (pos == 0) {
      n.ino = kRootIno;
    } else {
      // Parents are still layout positions here.
      paths[pos] = paths[n.parent - 1] + "/" + std::string(n.name);
      std::uint64_t h = fnv1a64(paths[pos]);
      h = mix(h, &n.kind, sizeof n.kind);
      if (n.kind == NodeKind::kPacked) {
        // Its bytes come from the header it synthesises and every shard: a
        // change in any of them must give a new number, or the kernel would
        // serve its cached pages of the old bytes.
        const std::string& head = t.blobs_[n.blob];
        h = mix(h, head.data(), head.size());
        for (const PackedSegment& g : t.packed_[n.index]) h = mix_identity(h, t.models_[g.model]->st());
      }
      if (n.kind != NodeKind::kDir) h = mix_identity(h, t.stats_[n.stat]);
      n.ino = h <= kRootIno ? h + 2 : h;  // 0 is invalid, 1 is the root
    }
    if (!t.by_ino_.emplace(n.ino, static_cast<std::uint32_t>(pos)).second) {
      return unexpected(Error{EEXIST, "two entries hash to one inode number: " + paths[pos]});
    }
  }
  // Parents were positions while laying out; now they are inode numbers.
  for (Node& n : t.nodes_) n.parent = t.nodes_[n.parent - 1].ino;
  return {};
}

Result<Tree> TreeBuilder::finish(bool hashed, bool leave_out_clashes) {
  std::vector<Node>& nodes = tree_.nodes_;
  nodes.clear();
  nodes.reserve(drafts_.size());
  Node root = drafts_[0].node;
  root.parent = kRootIno;
  root.ino = kRootIno;
  nodes.push_back(root);
  // Breadth first: (draft, its inode) of directories whose children are
  // still to be laid out.
  std::vector<std::pair<Id, Ino>> queue = {{0, kRootIno}};
  for (std::size_t q = 0; q < queue.size(); ++q) {
    auto [id, ino] = queue[q];
    std::vector<Id>& kids = drafts_[id].kids;
    // Sort (name, id) pairs: far cheaper to move than drafts.
    std::vector<std::pair<std::string_view, Id>> order;
    order.reserve(kids.size());
    for (Id k : kids) order.emplace_back(drafts_[k].name, k);
    std::stable_sort(order.begin(), order.end());
    std::size_t kept = order.empty() ? 0 : 1;
    for (std::size_t i = 1; i < order.size(); ++i) {
      if (order[i].first == order[kept - 1].first) {
        const auto show = shorten_for_message;
        auto label = [&](Id k) {
          const Node& n = drafts_[k].node;
          if (n.kind == NodeKind::kTensor) {
            return "tensor `" + show(tree_.models_[n.model]->header().tensors[n.index].name) + "`";
          }
          return "`" + show(drafts_[k].name) + "`";
        };
        std::string what = label(order[kept - 1].second) + " and " + label(order[i].second) +
                           " map to the same file name `" + show(order[i].first) + "`";
        if (!leave_out_clashes) return unexpected(Error{EEXIST, what});
        spdlog::warn("{}: the second is left out", what);
        continue;
      }
      order[kept++] = order[i];
    }
    order.resize(kept);
    Node& dir = nodes[ino - 1];
    dir.first_child = nodes.size() + 1;
    dir.child_count = order.size();
    std::uint64_t subdirs = 0;
    for (const auto& [name, k] : order) {
      Node n = drafts_[k].node;
      n.name = name;
      n.parent = ino;
      n.ino = nodes.size() + 1;
      tree_.total_bytes_ += n.size;
      nodes.push_back(n);
      if (n.kind == NodeKind::kDir) {
        queue.emplace_back(k, nodes.size());
        ++subdirs;
      }
    }
    nodes[ino - 1].nlink_extra = subdirs;
  }
  drafts_.clear();
  if (hashed) {
    // hash_inodes() looks parents up by position, as laid out above.
    if (auto r = hash_inodes(); !r) return unexpected(r.error());
  }
  return std::move(tree_);
}

Result<Tree> Tree::for_model(Model model, const AttrOptions& attr, const ViewOptions& views,
                             std::optional<mode_t> perm, bool hashed) {
  if (model.read_path() == ReadPath::kAuto) {
    if (auto r = model.prepare(); !r) return unexpected(r.error());
  }
  const mode_t bits = perm.value_or(model.st().st_mode & 0777);
  struct stat root = model.st();
  root.st_mode = (root.st_mode & S_IFMT) | bits;
  TreeBuilder b(attr, root, views);
  std::uint32_t src = b.add_source(std::make_shared<const Model>(std::move(model)), bits);
  b.add_model_contents(0, src);
  return b.finish(hashed);
}

struct stat Tree::attr(Ino ino) const {
  struct stat st {};
  const Node* n = node(ino);
  if (!n) return st;
  const struct stat& src = stats_[n->stat];
  // Permission bits as the access rule presented them (access.hpp). A
  // served directory keeps its read and search bits apart; a directory
  // made from a file (a model, a view) is r-x for each class that may read
  // the file; files are read-only.
  const mode_t readable = src.st_mode & 0444;
  st.st_ino = ino;
  st.st_uid = attr_.uid.value_or(src.st_uid);
  st.st_gid = attr_.gid.value_or(src.st_gid);
  st.st_atim = src.st_atim;
  st.st_mtim = src.st_mtim;
  st.st_ctim = src.st_ctim;
  st.st_blksize = kBlockSize;
  if (n->kind == NodeKind::kDir) {
    st.st_mode = S_IFDIR | (S_ISDIR(src.st_mode) ? src.st_mode & 0555 : readable | (readable >> 2));
    st.st_nlink = static_cast<nlink_t>(2 + n->nlink_extra);
    st.st_size = 0;
  } else {
    st.st_mode = S_IFREG | readable;
    st.st_nlink = 1;
    st.st_size = static_cast<off_t>(n->size);
    st.st_blocks = static_cast<blkcnt_t>((n->size + 511) / 512);
  }
  st.st_mode &= ~attr_.umask | S_IFMT;
  return st;
}

}  // namespace stfs
