std = "lua53"
max_line_length = 120
files["spec/**"] = {std = "+busted"}
exclude_files = {"build/**", "bench/node_modules/**", ".luarocks/**"}
