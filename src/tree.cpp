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
  const Header& h = model.header();

  std::vector<std::string_view> names;
  names.reserve(h.tensors.size());
  for (const TensorInfo& ti : h.tensors) names.push_back(ti.name);
  const std::vector<std::string_view> reserved = {kHeaderFile, kMetadataFile};
  auto files = map_names(names, reserved);
  if (!files) return unexpected(files.error());

  std::vector<Node> children;
  children.reserve(h.tensors.size() + 2);
  t.blobs_.push_back(header_json(h));
  t.blobs_.push_back(metadata_json(h));
  Node hdr;
  hdr.name = std::string(kHeaderFile);
  hdr.kind = NodeKind::kBlob;
  hdr.index = 0;
  hdr.size = t.blobs_[0].size();
  children.push_back(std::move(hdr));
  Node meta;
  meta.name = std::string(kMetadataFile);
  meta.kind = NodeKind::kBlob;
  meta.index = 1;
  meta.size = t.blobs_[1].size();
  children.push_back(std::move(meta));
  for (std::size_t i = 0; i < h.tensors.size(); ++i) {
    Node n;
    n.name = std::move((*files)[i]);
    n.kind = NodeKind::kTensor;
    n.model = 0;
    n.index = static_cast<std::uint32_t>(i);
    n.offset = h.data_start() + h.tensors[i].begin;
    n.size = h.tensors[i].size();
    children.push_back(std::move(n));
  }
  std::sort(children.begin(), children.end(),
            [](const Node& a, const Node& b) { return a.name < b.name; });

  Node root;
  root.kind = NodeKind::kDir;
  root.parent = kRootIno;
  root.first_child = 2;
  root.child_count = children.size();
  t.nodes_.reserve(children.size() + 1);
  t.nodes_.push_back(std::move(root));
  for (Node& c : children) {
    t.total_bytes_ += c.size;
    t.nodes_.push_back(std::move(c));
  }
  t.models_.push_back(std::move(model));
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
