{
  description = "stowage: Velero's backup locations, snapshot locations, credentials and schedules, declared in one file";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        stowage = pkgs.rustPlatform.buildRustPackage {
          pname = "stowage";
          version = "0.1.0";
          src = pkgs.lib.cleanSource ./.;
          cargoLock.lockFile = ./Cargo.lock;
          # The suite builds and starts the real kube-apiserver, etcd and Velero and the
          # bucket emulators; run tests/run instead.
          doCheck = false;
          nativeBuildInputs = [ pkgs.installShellFiles ];
          postInstall = ''
            installShellCompletion --cmd stowage \
              --bash <($out/bin/stowage completions bash) \
              --zsh <($out/bin/stowage completions zsh) \
              --fish <($out/bin/stowage completions fish)
          '';
          meta = {
            description = "Declarative Velero storage locations, credentials and schedules";
            license = pkgs.lib.licenses.asl20;
            mainProgram = "stowage";
          };
        };
        default = stowage;
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.system}.stowage ];
          packages = with pkgs; [ cargo rustc clippy rustfmt rust-analyzer python3 nodejs_20 go kubectl ];
        };
      });
    };
}
