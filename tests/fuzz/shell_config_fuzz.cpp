// SPDX-License-Identifier: MIT
// The configuration reader (`mipsec run` / `mipsec check`): arbitrary text as the config file.
// Whatever the text, parsing ends in a RunConfig or a ConfigError that names where it went
// wrong; any other exception, a crash or undefined behaviour is a bug. Every stage type is
// built in dry-run mode along the way, so each stage's settings translation is fuzzed too.
//
// Secret files ("psk_file", "key_file") are really read, but only from a private scratch
// directory this target fills with a few files (a good key, a text PSK, an empty one, one
// others can read, a directory): any file value that is absolute or names a parent is
// replaced by a name there before parsing, so the fuzzer never opens anything else.
#include <sys/stat.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "apps/shell/node_config.hpp"

namespace {

void require(bool ok) {
    if (!ok) std::abort();
}

class ScratchSecrets {
public:
    ScratchSecrets() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "mipsec-fuzz-config-XXXXXX").string();
        require(::mkdtemp(tmpl.data()) != nullptr);
        dir_ = tmpl;
        write("psk", "fuzz-pre-shared-key\n", 0600);
        write("key16", "000102030405060708090a0b0c0d0e0f\n", 0600);
        write("key20", "000102030405060708090a0b0c0d0e0f10111213", 0600);
        write("key36", std::string(72, 'a') + "\n", 0600);
        write("empty", "", 0600);
        write("newline", "\n", 0600);
        write("open", "readable-by-others", 0644);
        std::filesystem::create_directory(dir_ + "/dir");
    }
    ~ScratchSecrets() {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    const std::string& dir() const { return dir_; }

private:
    void write(const std::string& name, const std::string& content, mode_t mode) {
        const std::string path = dir_ + "/" + name;
        std::ofstream(path, std::ios::binary) << content;
        require(::chmod(path.c_str(), mode) == 0);
    }
    std::string dir_;
};

// Keeps every "*_file" value inside the scratch directory: names only, no '/', no "." or "..".
void confine_file_values(nlohmann::json& j) {
    if (j.is_array()) {
        for (auto& e : j) confine_file_values(e);
        return;
    }
    if (!j.is_object()) return;
    for (auto it = j.begin(); it != j.end(); ++it) {
        if (it.key().ends_with("_file") && it.value().is_string()) {
            const auto& path = it.value().get_ref<const std::string&>();
            if (path.find('/') != std::string::npos || path.starts_with(".")) it.value() = "outside";
        } else {
            confine_file_values(it.value());
        }
    }
}

// A file key anywhere in a built node's pipeline means a secret was not resolved into it.
bool names_a_file(const nlohmann::json& j) {
    if (j.is_array()) {
        for (const auto& e : j)
            if (names_a_file(e)) return true;
        return false;
    }
    if (!j.is_object()) return false;
    for (auto it = j.begin(); it != j.end(); ++it)
        if ((it.key() == "psk_file" || it.key() == "key_file") || names_a_file(it.value())) return true;
    return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static ScratchSecrets scratch;
    auto root = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
    if (root.is_discarded()) return 0;
    confine_file_values(root);

    mipsec::shell::SecretSources sources;
    sources.credentials_directory = scratch.dir();
    try {
        (void)mipsec::shell::control_socket_path(root);
    } catch (const mipsec::shell::ConfigError&) {
    }
    try {
        auto run = mipsec::shell::parse_run_config(root, sources);
        require(!run.nodes.empty());
        require(!run.control_socket.empty());
        for (const auto& n : run.nodes) {
            require(n.pipeline.is_array() && !n.pipeline.empty());
            require(!names_a_file(n.pipeline));
        }
    } catch (const mipsec::shell::ConfigError& e) {
        // An error must say where: "" is the root object, anything else a JSON pointer.
        require(e.pointer().empty() || e.pointer().front() == '/');
        require(e.what()[0] != '\0');
    }
    return 0;
}
