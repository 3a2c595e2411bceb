// The access rule (access.hpp) over a table of modes, owners and ACLs,
// including the cases where it must be conservative.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "stfs/source/access.hpp"

namespace stfs {
namespace {

AccessSubject subj(uid_t u, gid_t g, mode_t m, std::optional<Acl> acl = std::nullopt) {
  AccessSubject s;
  s.uid = u;
  s.gid = g;
  s.mode = m;
  s.acl = std::move(acl);
  return s;
}

Acl acl(unsigned user_obj, unsigned group_obj, unsigned mask, unsigned other,
        std::vector<Acl::Named> named) {
  Acl a;
  a.user_obj = user_obj;
  a.group_obj = group_obj;
  a.mask = mask;
  a.other = other;
  a.named = std::move(named);
  return a;
}

mode_t rule(const AccessSubject& t, std::vector<AccessSubject> dirs = {}) {
  return presented_mode(t, dirs);
}

TEST(AccessRule, PlainModesWithSearchableParents) {
  const auto dir = subj(0, 0, 0755);
  EXPECT_EQ(rule(subj(1000, 1000, 0644), {dir}), 0644u);
  EXPECT_EQ(rule(subj(1000, 1000, 0600), {dir}), 0600u);
  EXPECT_EQ(rule(subj(1000, 1000, 0640), {dir}), 0640u);
  EXPECT_EQ(rule(subj(1000, 1000, 0755), {dir}), 0755u);
  EXPECT_EQ(rule(subj(1000, 1000, 0604), {dir}), 0604u);  // group less than other stays so
}

TEST(AccessRule, AParentWithoutSearchClosesThatClass) {
  // Root's 0700 folder: only the root-owned file's owner may pass.
  EXPECT_EQ(rule(subj(0, 0, 0644), {subj(0, 0, 0755), subj(0, 0, 0700)}), 0600u);
  // Another user's 0700 folder: a 1000-owned file behind it is closed to all
  // but... nobody: 1000 itself cannot search it either.
  EXPECT_EQ(rule(subj(1000, 1000, 0644), {subj(2000, 2000, 0700)}), 0u);
  // 0750 folder of the file's own owner and group: other is closed.
  EXPECT_EQ(rule(subj(1000, 1000, 0644), {subj(1000, 1000, 0750)}), 0640u);
  // 0744: read but no search for group and other.
  EXPECT_EQ(rule(subj(1000, 1000, 0644), {subj(1000, 1000, 0744)}), 0600u);
  // 0711: search only; the file stays readable where its mode says.
  EXPECT_EQ(rule(subj(1000, 1000, 0644), {subj(1000, 1000, 0711)}), 0644u);
}

TEST(AccessRule, DirectoriesKeepReadAndSearchApart) {
  EXPECT_EQ(rule(subj(1000, 1000, 0744), {subj(0, 0, 0755)}), 0744u);
  EXPECT_EQ(rule(subj(1000, 1000, 0711), {subj(0, 0, 0755)}), 0711u);
  EXPECT_EQ(rule(subj(1000, 1000, 0755), {subj(0, 0, 0755)}), 0755u);
}

TEST(AccessRule, ParentOwnedByAnotherUserIsJudgedByBitsThatSurelyApply) {
  // The parent belongs to 2000:3000. A reader in the file's group (1000)
  // may or may not be in group 3000, and could even be user 2000: the rule
  // takes the least of owner, group and other bits of the parent.
  EXPECT_EQ(rule(subj(1000, 1000, 0644), {subj(2000, 3000, 0751)}), 0644u);
  // 0750: only members of 3000 may pass, and nobody is sure to be one.
  EXPECT_EQ(rule(subj(1000, 1000, 0644), {subj(2000, 3000, 0750)}), 0u);
  // The owner 1000 falls in the parent's group or other class: 0710 gives
  // "other" nothing, so nobody but root is sure to pass.
  EXPECT_EQ(rule(subj(1000, 1000, 0644), {subj(2000, 3000, 0710)}), 0u);
  // Same group as the file: group members surely match the parent's group.
  EXPECT_EQ(rule(subj(1000, 3000, 0644), {subj(2000, 3000, 0710)}), 0040u);
  // A parent whose owner bits are below its other bits: a group or other
  // reader could be that owner; the file's owner 1000 is not.
  EXPECT_EQ(rule(subj(1000, 1000, 0644), {subj(2000, 3000, 0055)}), 0600u);
  // Root-owned parents never count root as a possible reader.
  EXPECT_EQ(rule(subj(1000, 1000, 0644), {subj(0, 0, 0055)}), 0644u);
}

TEST(AccessRule, AclDenyEntryTakesAwayFromItsClass) {
  // 0644 + user:65534:--- (mask r--): "other" readers may be 65534.
  auto a = acl(6, 4, 4, 4, {{true, 65534, 0}});
  EXPECT_EQ(rule(subj(1000, 1000, 0644, a), {subj(0, 0, 0755)}), 0600u);
  // group:100:--- denies a reader in group 100; other readers may be.
  auto g = acl(6, 4, 4, 4, {{false, 100, 0}});
  EXPECT_EQ(rule(subj(1000, 1000, 0644, g), {subj(0, 0, 0755)}), 0640u);
  // ...but a reader of the file's own group matches group_obj (r) and gets
  // at least that, whatever named group it is also in.
}

TEST(AccessRule, AclGrantEntryNeverWidensOthers) {
  // 0600 + user:65534:r-- (mask r--): only 65534 gains; the mount shows 0600.
  auto a = acl(6, 0, 4, 0, {{true, 65534, 4}});
  EXPECT_EQ(rule(subj(1000, 1000, 0640, a), {subj(0, 0, 0755)}), 0600u);
  // group:100:r-x on a 0700 directory: still closed to group and other.
  auto d = acl(7, 0, 5, 0, {{false, 100, 5}});
  EXPECT_EQ(rule(subj(1000, 1000, 0644), {subj(1000, 1000, 0750, d)}), 0600u);
}

TEST(AccessRule, MaskLimitsNamedEntriesAndGroupObj) {
  // group_obj rw- but mask ---: the group class reads nothing.
  auto a = acl(6, 6, 0, 4, {{true, 2000, 6}});
  EXPECT_EQ(rule(subj(1000, 1000, 0604, a), {}), 0600u);
  // A named user with r-- under mask r-- and others r--: all read.
  auto b = acl(6, 4, 4, 4, {{true, 2000, 4}});
  EXPECT_EQ(rule(subj(1000, 1000, 0644, b), {}), 0644u);
  // The owner's own named entry never applies to the owner.
  auto c = acl(6, 4, 4, 4, {{true, 1000, 0}});
  EXPECT_EQ(rule(subj(1000, 1000, 0644, c), {}), 0644u);
}

TEST(AccessRule, AclOnAParentDirectory) {
  // user:1000:--x on a 0700 dir of 2000: the owner 1000 may search it.
  auto d = acl(7, 0, 1, 0, {{true, 1000, 1}});
  EXPECT_EQ(rule(subj(1000, 1000, 0644), {subj(2000, 2000, 0700, d)}), 0600u);
  // The same dir with user:65534:--- and other --x: others may be 65534.
  auto e = acl(7, 1, 1, 1, {{true, 65534, 0}});
  EXPECT_EQ(rule(subj(1000, 1000, 0644), {subj(0, 0, 0711, e)}), 0600u);
}

TEST(AccessRule, UnreadableAclGrantsOnlyTheOwner) {
  auto t = subj(1000, 1000, 0644);
  t.acl_unknown = true;
  EXPECT_EQ(rule(t, {subj(0, 0, 0755)}), 0600u);
  auto d = subj(0, 0, 0755);
  d.acl_unknown = true;
  EXPECT_EQ(rule(subj(1000, 1000, 0644), {d}), 0u);
}

TEST(AccessRule, RootOwnedTargetKeepsOwnerAccess) {
  // Root passes any directory, natively and through the mount.
  EXPECT_EQ(rule(subj(0, 0, 0644), {subj(1000, 1000, 0700)}), 0600u);
}

TEST(AccessRule, ParsesTheXattrForm) {
  // user::rw- user:65534:--- group::r-- mask::r-- other::r--
  std::string v("\x02\x00\x00\x00", 4);
  auto add = [&](unsigned tag, unsigned perm, std::uint32_t id) {
    v.push_back(static_cast<char>(tag & 0xff));
    v.push_back(static_cast<char>(tag >> 8));
    v.push_back(static_cast<char>(perm));
    v.push_back('\0');
    for (int i = 0; i < 4; ++i) v.push_back(static_cast<char>((id >> (8 * i)) & 0xff));
  };
  add(0x01, 6, 0xffffffff);
  add(0x02, 0, 65534);
  add(0x04, 4, 0xffffffff);
  add(0x10, 4, 0xffffffff);
  add(0x20, 4, 0xffffffff);
  auto a = parse_acl_xattr(v);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->mask, 4u);
  ASSERT_EQ(a->named.size(), 1u);
  EXPECT_TRUE(a->named[0].is_user);
  EXPECT_EQ(a->named[0].id, 65534u);
  EXPECT_EQ(a->named[0].perm, 0u);
  EXPECT_FALSE(parse_acl_xattr(v.substr(0, v.size() - 1)));
  EXPECT_FALSE(parse_acl_xattr(std::string("\x01\x00\x00\x00", 4)));
  // Named entries without a mask are malformed.
  std::string nomask("\x02\x00\x00\x00", 4);
  v.swap(nomask);
  add(0x01, 6, 0);
  add(0x02, 4, 7);
  add(0x04, 4, 0);
  add(0x20, 4, 0);
  EXPECT_FALSE(parse_acl_xattr(v));
}

}  // namespace
}  // namespace stfs
