// SPDX-License-Identifier: MIT
#include "apps/mipsec/lab.hpp"

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <unistd.h>

#ifndef MIPSEC_LAB_INSTALLED_DIR
#define MIPSEC_LAB_INSTALLED_DIR ""
#endif
#ifndef MIPSEC_LAB_SOURCE_DIR
#define MIPSEC_LAB_SOURCE_DIR ""
#endif

namespace mipsec::lab {
namespace {

constexpr const char* python = "/usr/bin/python3";
constexpr int exit_failure = 1;

bool holds_lab(const std::string& dir) {
    return !dir.empty() && ::access((dir + "/__main__.py").c_str(), R_OK) == 0;
}

}  // namespace

std::optional<std::string> find_directory() {
    if (const char* env = std::getenv("MIPSEC_LAB_DIR"); env != nullptr && *env != '\0') {
        // Named explicitly: a wrong path is a mistake to report, not a reason to run another lab.
        if (holds_lab(env)) return std::string(env);
        std::fprintf(stderr, "mipsec lab: MIPSEC_LAB_DIR=%s holds no lab (no __main__.py)\n", env);
        return std::nullopt;
    }
    for (const char* dir : {MIPSEC_LAB_INSTALLED_DIR, MIPSEC_LAB_SOURCE_DIR})
        if (holds_lab(dir)) return std::string(dir);
    std::fprintf(stderr,
                 "mipsec lab: the lab is not installed: looked in %s and %s; set MIPSEC_LAB_DIR to the lab directory "
                 "(tools/lab in the source tree)\n",
                 *MIPSEC_LAB_INSTALLED_DIR ? MIPSEC_LAB_INSTALLED_DIR : "(no install path)",
                 *MIPSEC_LAB_SOURCE_DIR ? MIPSEC_LAB_SOURCE_DIR : "(no source path)");
    return std::nullopt;
}

int run(const std::vector<std::string>& args) {
    auto dir = find_directory();
    if (!dir) return exit_failure;
    if (::access(python, X_OK) != 0) {
        std::fprintf(stderr, "mipsec lab: %s: %s; the lab needs Python 3 (Debian package python3)\n", python, std::strerror(errno));
        return exit_failure;
    }
    // The lab starts this very binary for every node, so a build-tree mipsec runs a
    // build-tree lab without being installed.
    char self[PATH_MAX];
    const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        std::fprintf(stderr, "mipsec lab: cannot read /proc/self/exe: %s\n", std::strerror(errno));
        return exit_failure;
    }
    self[n] = '\0';
    std::vector<std::string> argv_strings = {python, *dir, "--mipsec", self};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : argv_strings) argv.push_back(s.data());
    argv.push_back(nullptr);
    // No __pycache__ written into an installed (read-only) lab directory.
    ::setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
    ::execv(python, argv.data());
    std::fprintf(stderr, "mipsec lab: cannot run %s: %s\n", python, std::strerror(errno));
    return exit_failure;
}

}  // namespace mipsec::lab
