// Notices: lines for the user that are not errors ("removed a stale temporary output ..."). They go
// to stderr as "sluice: <text>" unless a test or an embedding program redirects them.
#pragma once

#include <functional>
#include <string>

namespace sluice {

void notice(const std::string& text);
// Replaces where notices go (nullptr: back to stderr). Returns the previous sink.
std::function<void(const std::string&)> set_notice_sink(std::function<void(const std::string&)> sink);

}  // namespace sluice
