--- Command line: lucid [run FILE|NAME | -e CHUNK | replay FILE | --version | --help]
local M = {}

function M.main(argv)
  local lucid = require "lucid"
  local a1 = argv[1]
  if a1 == "-e" then
    local chunk = assert(loadstring(argv[2] or "", "=(command line)"))
    chunk()
    return 0
  end
  return 0
end

return M
