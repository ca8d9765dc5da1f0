{
  description = "vhost-user device backends in Python (vhost-device-py)";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      lib = nixpkgs.lib;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # Every directory under packages/ (but the framework, packages/vhost-core) and
      # staging/ that has a pyproject.toml is a device: adding one needs no change here.
      # Name, version and dependencies are read from that file.
      devicesIn = group:
        let
          root = ./. + "/${group}";
          entries = if builtins.pathExists root then builtins.readDir root else { };
          isPackage = name: entries.${name} == "directory"
            && builtins.pathExists (root + "/${name}/pyproject.toml");
        in
        map (name: "${group}/${name}") (builtins.filter isPackage (builtins.attrNames entries));
      devices = builtins.filter (dir: dir != "packages/vhost-core") (devicesIn "packages");
      # Not production ready: built like the others, left out of the default package.
      stagingDevices = devicesIn "staging";

      # What a device needs beyond its pyproject dependencies (the C libraries its Cython
      # modules link, the tools to find them) is in its own pyproject too, as nixpkgs
      # attribute names: [tool.vhost-device.nix] build-inputs, native-build-inputs; and
      # python-packages, PyPI names mapped to nixpkgs' where they differ.
      extrasOf = pkgs: pyproject:
        let
          nix = pyproject.tool."vhost-device".nix or { };
          attrs = map (name: lib.getAttrFromPath (lib.splitString "." name) pkgs);
        in
        {
          nativeBuildInputs = attrs (nix.native-build-inputs or [ ]);
          buildInputs = attrs (nix.build-inputs or [ ]);
          renames = nix.python-packages or { };
        };

      pyprojectOf = dir: (lib.importTOML (./. + "/${dir}/pyproject.toml")).project;

      # "vhost-user-core>=0.1,<0.2; python_version >= '3.11'" -> "vhost-user-core"
      requirementName = req: lib.toLower (builtins.head (builtins.match "[[:space:]]*([A-Za-z0-9._-]+).*" req));

      mkPackages = pkgs:
        let
          python = pkgs.python3;
          ps = python.pkgs;
          coreProject = pyprojectOf "packages/vhost-core";

          vhost-user-core = ps.buildPythonPackage {
            pname = coreProject.name;
            version = coreProject.version;
            pyproject = true;
            src = lib.cleanSource ./packages/vhost-core;
            # Cython extensions are built by the package's own hatch_build.py hook.
            build-system = [ ps.hatchling ps.cython ps.setuptools ];
            nativeCheckInputs = [ ps.pytestCheckHook ];
            # Guest tests boot QEMU on a downloaded Debian kernel: not in the build sandbox.
            disabledTestMarks = [ "guest" ];
            pythonImportsCheck = [ "vhost_user_core" ];
            meta = {
              description = coreProject.description;
              license = with lib.licenses; [ asl20 bsd3 ];
              platforms = lib.platforms.linux;
            };
          };

          # A workspace dependency maps to our own package, anything else to nixpkgs by
          # name, or by the name a device gives it in [tool.vhost-device.nix]
          # python-packages (PyPI's gpiod is nixpkgs' python3Packages.libgpiod).
          dependencyOf = renames: req:
            let name = requirementName req; in
            if name == "vhost-user-core" then vhost-user-core else ps.${renames.${name} or name};

          mkDevice = dir:
            let
              pyproject = lib.importTOML (./. + "/${dir}/pyproject.toml");
              project = pyproject.project;
              extras = extrasOf pkgs pyproject;
              inherit (extras) renames;
              # hatchling is the build backend itself; the rest (Cython, setuptools, and
              # vhost-user-core for its build hook) come from build-system.requires.
              buildRequires = builtins.filter (r: requirementName r != "hatchling")
                pyproject.build-system.requires;
            in
            ps.buildPythonApplication {
              pname = project.name;
              version = project.version;
              pyproject = true;
              src = lib.cleanSource (./. + "/${dir}");
              build-system = [ ps.hatchling ] ++ map (dependencyOf renames) buildRequires;
              inherit (extras) nativeBuildInputs buildInputs;
              dependencies = map (dependencyOf renames) (project.dependencies or [ ]);
              nativeCheckInputs = [ ps.pytestCheckHook ];
              disabledTestMarks = [ "guest" ];
              pythonImportsCheck = [ (builtins.replaceStrings [ "-" ] [ "_" ] project.name) ];
              meta = {
                description = project.description;
                license = with lib.licenses; [ asl20 bsd3 ];
                mainProgram = project.name;
                platforms = lib.platforms.linux;
              };
            };

          packagesOf = dirs: lib.listToAttrs (map
            (dir: lib.nameValuePair (pyprojectOf dir).name (mkDevice dir))
            dirs);
        in
        {
          devices = packagesOf devices;
          staging = packagesOf stagingDevices;
          inherit vhost-user-core;
        };
    in
    {
      packages = forAllSystems (pkgs:
        let built = mkPackages pkgs; in
        built.devices // built.staging // {
          inherit (built) vhost-user-core;
          default = pkgs.symlinkJoin {
            name = "vhost-device-py";
            paths = lib.attrValues built.devices;
          };
        });

      # One app per daemon: `nix run .#vhost-device-<name> -- <its flags>`.
      apps = forAllSystems (pkgs:
        let built = mkPackages pkgs; in
        lib.mapAttrs
          (name: drv: { type = "app"; program = "${drv}/bin/${name}"; })
          (built.devices // built.staging));

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            (pkgs.python3.withPackages (ps: [
              ps.cython
              ps.hatchling
              ps.setuptools
              ps.pytest
              ps.mypy
            ]))
            pkgs.ruff
            pkgs.gcc
            pkgs.groff
            pkgs.qemu
            pkgs.busybox
          ];
          # xtask makes its own .venv from this Python; nothing to do on Debian-only steps.
          shellHook = ''
            echo "vhost-device-py: python3 xtask test | lint | new | devices | dist | demo | manpages | bench"
          '';
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixpkgs-fmt);
    };
}
