// Building the namespace; see tree.hpp for the inode layout.
#include "stfs/tree.hpp"

#include <algorithm>
#include <cerrno>

#include "stfs/json_writer.hpp"
#include "stfs/names.hpp"

namespace stfs {

Ino Tree::find_child(Ino parent, std::string_view name) const {
  const Node* dir = node(parent);
  if (!dir || dir->kind != NodeKind::kDir) return 0;
  auto begin = nodes_.begin() + static_cast<std::ptrdiff_t>(dir->first_child - 1);
  auto end = begin + static_cast<std::ptrdiff_t>(dir->child_count);
  auto it = std::lower_bound(begin, end, name,
                             [](const Node& n, std::string_view key) { return n.name < key; });
  if (it == end || it->name != name) return 0;
  return static_cast<Ino>(it - nodes_.begin()) + 1;
}

Result<Tree> Tree::for_model(Model model, const AttrOptions& attr) {
  Tree t;
  t.attr_ = attr;
  t.models_.push_back(std::move(model));
  const Header& h = t.models_[0].header();
  const std::vector<std::string_view> reserved = {kHeaderFile, kMetadataFile};

  t.blobs_.push_back(header_json(h));
  t.blobs_.push_back(metadata_json(h));

  // Children as (file name, source) pairs, sorted once; the nodes are then
  // laid out in that order. Sorting pairs moves far less than sorting nodes.
  constexpr std::uint32_t kHeaderBlob = 0xffffffff, kMetadataBlob = 0xfffffffe;
  std::vector<std::pair<std::string_view, std::uint32_t>> order;
  order.reserve(h.tensors.size() + 2);
  order.emplace_back(kHeaderFile, kHeaderBlob);
  order.emplace_back(kMetadataFile, kMetadataBlob);
  for (std::size_t i = 0; i < h.tensors.size(); ++i) {
    std::string_view name = h.tensors[i].name;
    if (!maps_to_itself(name, reserved))
      name = t.name_store_.emplace_back(encode_name(name, reserved));
    order.emplace_back(name, static_cast<std::uint32_t>(i));
  }
  std::stable_sort(order.begin(), order.end());
  // The mapping is injective but for FNV-1a collisions of long names: two
  // equal neighbours would hide a tensor, so they fail the mount.
  for (std::size_t i = 1; i < order.size(); ++i) {
    if (order[i].first == order[i - 1].first) {
      auto tensor_name = [&](std::uint32_t idx) {
        std::string_view n = idx >= kMetadataBlob ? order[i].first : h.tensors[idx].name;
        return n.size() > 60 ? std::string(n.substr(0, 60)) + "..." : std::string(n);
      };
      return unexpected(Error{EEXIST, "tensor names `" + tensor_name(order[i - 1].second) +
                                          "` and `" + tensor_name(order[i].second) +
                                          "` map to the same file name"});
    }
  }

  Node root;
  root.kind = NodeKind::kDir;
  root.parent = kRootIno;
  root.first_child = 2;
  root.child_count = order.size();
  t.nodes_.reserve(order.size() + 1);
  t.nodes_.push_back(root);
  for (const auto& [name, idx] : order) {
    Node n;
    n.name = name;
    if (idx >= kMetadataBlob) {
      n.kind = NodeKind::kBlob;
      n.index = idx == kHeaderBlob ? 0 : 1;
      n.size = t.blobs_[n.index].size();
    } else {
      n.kind = NodeKind::kTensor;
      n.model = 0;
      n.index = idx;
      n.offset = h.data_start() + h.tensors[idx].begin;
      n.size = h.tensors[idx].size();
    }
    t.total_bytes_ += n.size;
    t.nodes_.push_back(n);
  }
  return t;
}

struct stat Tree::attr(Ino ino) const {
  struct stat st {};
  const Node* n = node(ino);
  if (!n) return st;
  // Directories take their attributes from the model they show (the root:
  // the first model).
  const struct stat& src = models_[n->kind == NodeKind::kDir ? 0 : n->model].st();
  const mode_t readable = src.st_mode & 0444;
  st.st_ino = ino;
  st.st_uid = attr_.uid.value_or(src.st_uid);
  st.st_gid = attr_.gid.value_or(src.st_gid);
  st.st_atim = src.st_atim;
  st.st_mtim = src.st_mtim;
  st.st_ctim = src.st_ctim;
  st.st_blksize = kBlockSize;
  if (n->kind == NodeKind::kDir) {
    // r-x for each class that may read the source.
    st.st_mode = S_IFDIR | readable | (readable >> 2);
    st.st_nlink = 2;
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
