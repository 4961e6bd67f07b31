"""The scaling benchmark (docs/benchmarks.md): the harness (`scale`), the floor — one
hand-written DuckDB SQL script (`floor.sql`, run by `floor`) — and the pandas peer
(`peer`), which compute the same core outputs as the warehouse from the raw tables
(`sources` says where those are)."""
