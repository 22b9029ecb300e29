// gen-nodejs-sdk writes the TypeScript SDK of a package schema with Pulumi's own code generator
// (pkg/v3/codegen/nodejs), after binding and validating the schema as the CLI does.
//
// `pulumi package gen-sdk --language nodejs` asks the Node.js language host to generate the SDK;
// the host this project can build (sdk/v3 v3.68) predates that call ("method GeneratePackage not
// implemented"), so the generator is called here directly, at the CLI's version.
//
//	gen-nodejs-sdk SCHEMA.json OUT_DIR
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/blang/semver"
	"github.com/pulumi/pulumi/pkg/v3/codegen/nodejs"
	"github.com/pulumi/pulumi/pkg/v3/codegen/schema"
)

// noReferences is the loader of a schema that refers to no other package.
type noReferences struct{}

func (noReferences) refused(name string) error {
	return fmt.Errorf("the schema refers to package %q: this generator loads no other package", name)
}

func (l noReferences) LoadPackage(name string, _ *semver.Version) (*schema.Package, error) {
	return nil, l.refused(name)
}

func (l noReferences) LoadPackageV2(
	_ context.Context, d *schema.PackageDescriptor,
) (*schema.Package, error) {
	return nil, l.refused(d.Name)
}

func (l noReferences) LoadPackageReference(
	name string, _ *semver.Version,
) (schema.PackageReference, error) {
	return nil, l.refused(name)
}

func (l noReferences) LoadPackageReferenceV2(
	_ context.Context, d *schema.PackageDescriptor,
) (schema.PackageReference, error) {
	return nil, l.refused(d.Name)
}

func generate(schemaPath, out string) error {
	data, err := os.ReadFile(schemaPath)
	if err != nil {
		return err
	}
	var spec schema.PackageSpec
	if err := json.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("%s: %w", schemaPath, err)
	}
	pkg, diags, err := schema.BindSpec(spec, noReferences{}, schema.ValidationOptions{})
	if err != nil {
		return err
	}
	if diags.HasErrors() {
		return diags
	}
	files, err := nodejs.GeneratePackage("gen-nodejs-sdk", pkg, nil, nil, false, noReferences{})
	if err != nil {
		return err
	}
	for name, content := range files {
		path := filepath.Join(out, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, content, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: gen-nodejs-sdk SCHEMA.json OUT_DIR")
		os.Exit(2)
	}
	if err := generate(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "gen-nodejs-sdk:", err)
		os.Exit(1)
	}
}
