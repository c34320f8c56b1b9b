#include "daemon/correlate/traceparent.h"

#include <gtest/gtest.h>

#include <string>

namespace isotrace::correlate {
namespace {

constexpr std::string_view kValid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

TEST(TraceparentTest, ParsesTheSpecExample) {
  std::optional<TraceContext> ctx = ParseTraceparent(kValid);
  ASSERT_TRUE(ctx.has_value());
  EXPECT_EQ(HexEncode(ctx->trace_id), "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(HexEncode(ctx->parent_id), "b7ad6b7169203331");
  EXPECT_EQ(ctx->trace_id[0], 0x0a);
  EXPECT_EQ(ctx->trace_id[15], 0x9c);
  EXPECT_EQ(ctx->parent_id[7], 0x31);
  EXPECT_EQ(ctx->flags, 0x01);
}

TEST(TraceparentTest, KeepsUnknownFlagBits) {
  std::optional<TraceContext> ctx =
      ParseTraceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-fe");
  ASSERT_TRUE(ctx.has_value());
  EXPECT_EQ(ctx->flags, 0xfe);
}

TEST(TraceparentTest, ToleratesSurroundingOws) {
  EXPECT_TRUE(ParseTraceparent(std::string(" \t") + std::string(kValid) + "  ").has_value());
}

TEST(TraceparentTest, RejectsWrongLength) {
  EXPECT_FALSE(ParseTraceparent("").has_value());
  EXPECT_FALSE(ParseTraceparent(kValid.substr(0, 54)).has_value());
  EXPECT_FALSE(ParseTraceparent(std::string(kValid) + "0").has_value());
  // Version 00 carries nothing after the flags, not even a "-suffix".
  EXPECT_FALSE(ParseTraceparent(std::string(kValid) + "-abc").has_value());
}

TEST(TraceparentTest, RejectsBadSeparators) {
  std::string s(kValid);
  for (size_t pos : {2u, 35u, 52u}) {
    std::string bad = s;
    bad[pos] = '_';
    EXPECT_FALSE(ParseTraceparent(bad).has_value()) << pos;
  }
  // A separator moved by one: still 55 characters, fields misaligned.
  EXPECT_FALSE(
      ParseTraceparent("00-0af7651916cd43dd8448eb211c80319-cb7ad6b7169203331-01").has_value());
}

TEST(TraceparentTest, RejectsUppercaseHex) {
  EXPECT_FALSE(
      ParseTraceparent("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01").has_value());
  EXPECT_FALSE(
      ParseTraceparent("00-0af7651916cd43dd8448eb211c80319c-B7AD6B7169203331-01").has_value());
  EXPECT_FALSE(
      ParseTraceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0A").has_value());
}

TEST(TraceparentTest, RejectsNonHex) {
  EXPECT_FALSE(
      ParseTraceparent("00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01").has_value());
  EXPECT_FALSE(
      ParseTraceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333z-01").has_value());
  EXPECT_FALSE(
      ParseTraceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0x").has_value());
  EXPECT_FALSE(
      ParseTraceparent("00-0af7651916cd43dd 448eb211c80319c-b7ad6b7169203331-01").has_value());
}

TEST(TraceparentTest, RejectsAllZeroIds) {
  EXPECT_FALSE(
      ParseTraceparent("00-00000000000000000000000000000000-b7ad6b7169203331-01").has_value());
  EXPECT_FALSE(
      ParseTraceparent("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01").has_value());
}

TEST(TraceparentTest, RejectsVersionFf) {
  EXPECT_FALSE(
      ParseTraceparent("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").has_value());
}

TEST(TraceparentTest, RejectsOtherVersions) {
  EXPECT_FALSE(
      ParseTraceparent("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").has_value());
  EXPECT_FALSE(
      ParseTraceparent("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").has_value());
  EXPECT_FALSE(
      ParseTraceparent("0-00af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").has_value());
}

TEST(TraceparentTest, RejectsInnerWhitespaceAndControlCharacters) {
  EXPECT_FALSE(ParseTraceparent(std::string(kValid) + "\r").has_value());
  EXPECT_FALSE(ParseTraceparent("\n" + std::string(kValid)).has_value());
}

TEST(TraceparentTest, FormatProducesTheSpecExample) {
  TraceId trace{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd,
                0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c};
  SpanId span{0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31};
  EXPECT_EQ(FormatTraceparent(trace, span, 1), kValid);
}

TEST(TraceparentTest, RoundTrip) {
  TraceId trace{};
  SpanId span{};
  for (size_t i = 0; i < trace.size(); ++i) trace[i] = static_cast<uint8_t>(0x11 * i + 3);
  for (size_t i = 0; i < span.size(); ++i) span[i] = static_cast<uint8_t>(0xf0 - i);
  const std::string s = FormatTraceparent(trace, span, 0x00);
  EXPECT_EQ(s.size(), 55u);
  std::optional<TraceContext> ctx = ParseTraceparent(s);
  ASSERT_TRUE(ctx.has_value());
  EXPECT_EQ(ctx->trace_id, trace);
  EXPECT_EQ(ctx->parent_id, span);
  EXPECT_EQ(ctx->flags, 0x00);
  EXPECT_EQ(FormatTraceparent(ctx->trace_id, ctx->parent_id, ctx->flags), s);
}

TEST(TraceparentTest, HexEncode) {
  const uint8_t bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
  EXPECT_EQ(HexEncode(bytes), "00017f80abff");
  EXPECT_EQ(HexEncode({}), "");
}

}  // namespace
}  // namespace isotrace::correlate
